"""The bad-input catalogue (tests/catalogue.py): every entry handled as documented in docs/reliability.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catalogue import CATALOGUE, DOC, END, START, Case, Ctx, table
from click.testing import CliRunner

import mtbranch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, save_composed
from mtbranch.errors import IntegrityError
from mtbranch.spec.findings import CODES
from mtbranch.trunk.source import load_trunk_source

from conftest import make_bert_dir
from helpers import make_branch


@pytest.fixture(scope="module")
def ctx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    base = tmp_path_factory.mktemp("catalogue")
    branches = {
        "sentiment": make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=2, seed=1),
        "similarity": make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=3, layers=1,
                                  head="regression", signature="pair", pooling="mean", seed=2),
        "entities": make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=3),
    }
    composed = base / "composed"
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(p, "directory") for p in branches.values()]), composed)
    return Ctx(trunk=tiny_bert_dir, reseeded=make_bert_dir(base / "reseeded", seed=5),
               wider=make_bert_dir(base / "wider", hidden=48), branches=branches, composed=composed,
               model=mtbranch.load(composed))


def test_catalogue_is_large_and_distinct() -> None:
    assert len(CATALOGUE) >= 40
    assert len({c.id for c in CATALOGUE}) == len(CATALOGUE)
    assert len({c.input for c in CATALOGUE}) == len(CATALOGUE)
    for c in CATALOGUE:  # an expected code is a documented finding code
        if c.expect[:1] in "PMTKWVCF" and c.expect[1:].isdigit():
            assert c.expect in CODES, c.id


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path) -> None:
    outcome = case.run(ctx, tmp_path)
    assert case.expect in outcome.got, (outcome.got, outcome.output[-2000:], outcome.notes)
    assert outcome.exit == case.exit, outcome.output[-2000:]
    assert "Traceback" not in outcome.output
    assert "internal error" not in outcome.output  # an unexpected exception is a bug, even without traceback


def test_catalogue_table_in_docs() -> None:
    text = DOC.read_text()
    assert START in text and END in text
    shown = text[text.index(START) + len(START):text.index(END)].strip()
    assert shown == table(), "docs/reliability.md is stale: run `python tests/catalogue.py`"


@pytest.mark.slow
def test_real_cli_process_prints_no_traceback(ctx: Ctx, tmp_path: Path) -> None:
    """Three catalogue inputs through a real ``mtbranch`` process (stderr included), not CliRunner."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{ not json")
    truncated = tmp_path / "c"
    shutil.copytree(ctx.composed, truncated)
    weights = truncated / "trunk" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    env = {**os.environ, "MTBRANCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("MTBRANCH_DEBUG", None)
    runs = [(["validate", "--no-plugins", "--branch", str(bad)], 1, "M002"),
            (["predict", str(truncated), "x", "--no-verify"], 1, "header length"),
            (["predict", str(ctx.composed), "x", "--task", "nope"], 1, "unknown task")]
    for args, status, needle in runs:
        r = subprocess.run([sys.executable, "-m", "mtbranch.cli.main", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == status, r.stderr
        assert needle in r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr


def test_integrity_opt_out_is_explicit(ctx: Ctx, tmp_path: Path) -> None:
    """A tampered artifact is refused by default; only ``verify=False`` / ``--no-verify`` loads it."""
    c = tmp_path / "c"
    shutil.copytree(ctx.composed, c)
    (c / "branches" / "sentiment" / "manifest.json").write_text(
        (c / "branches" / "sentiment" / "manifest.json").read_text().replace('"0.1.0"', '"0.1.1"', 1))
    with pytest.raises(IntegrityError, match="sha256 differs"):
        mtbranch.load(c)
    assert mtbranch.load(c, verify=False).branch("sentiment").manifest.version == "0.1.1"
    refused = CliRunner().invoke(cli, ["predict", str(c), "the film", "--task", "sentiment"])
    assert refused.exit_code == 1 and "does not match its lock file" in refused.output
    allowed = CliRunner().invoke(cli, ["predict", str(c), "the film", "--task", "sentiment", "--no-verify"])
    assert allowed.exit_code == 0 and "sentiment:" in allowed.output
