"""The installed trunk plugin is discovered, points at a complete model directory and imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mtbranch.plugins.manager import PluginManager


def test_trunk_is_discovered() -> None:
    pm = PluginManager(autoload=True)
    trunks = pm.trunks()
    assert "minilm-l6" in trunks, f"trunk not provided; plugin findings: {pm.findings}"
    path = Path(trunks["minilm-l6"].path)
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("bert", 6, 384)


def test_trunk_resolves_by_name() -> None:
    from mtbranch.trunk.source import resolve_trunk

    src = resolve_trunk("minilm-l6")
    assert src.num_layers == 6 and src.structure.hidden_size == 384


def test_import_does_not_import_torch() -> None:
    code = ("import sys, mtbranch_trunk_minilm as m; m.mtbranch_trunks(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
