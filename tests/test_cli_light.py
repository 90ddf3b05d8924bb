"""`mtbranch --help` and `mtbranch schema` import no torch (nor transformers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import sys
from mtbranch.cli.main import cli
try:
    cli({args!r}, prog_name="mtbranch", standalone_mode=False)
except SystemExit:
    pass
print("\\nHEAVY=" + ",".join(m for m in ("torch", "transformers", "safetensors.torch") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["schema"], ["plugins"], ["validate", "--help"], ["compose", "--help"]])
def test_light_commands_import_no_torch(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         check=True).stdout
    assert out.rstrip().endswith("HEAVY="), out[-300:]


def test_schema_is_json_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "mtbranch.cli.main", "schema"], capture_output=True, text=True,
                         check=True).stdout
    schema = json.loads(out)
    assert schema["title"] == "mtbranch branch manifest"
    assert {"name", "trunk", "attach_depth", "head", "tokenizer", "weights"} <= set(schema["required"])


def test_import_mtbranch_is_light() -> None:
    code = "import sys, mtbranch; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
