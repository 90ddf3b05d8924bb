"""`mtbranch train|sweep|distill`: runs, user errors without tracebacks, light --help, and a 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sdk_fixtures
from click.testing import CliRunner
from sdk_fixtures import write_conll, write_sentiment

from mtbranch.cli.sdk_commands import distill_cmd, sweep_cmd, train_cmd

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)
FAST = ["--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--max-length", "32", "--no-progress"]


def _sst(tmp: Path, n: int = 64) -> list[str]:
    return ["--train", str(write_sentiment(tmp / "train.tsv", n, 1)), "--dev",
            str(write_sentiment(tmp / "dev.tsv", 16, 2)), "--text-col", "sentence", "--label-col", "label"]


def test_train_sweep_distill_commands(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    r = CliRunner()
    out = tmp_path / "sentiment"
    args = ["--trunk", str(sdk_trunk_dir), "--task", "classification", *_sst(tmp_path), *FAST,
            "--label-names", "negative,positive", "--layers", "2", "--name", "sentiment", "-o", str(out), "--json"]
    res = r.invoke(train_cmd, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)  # --json: only the result on stdout, Trainer's logs on stderr
    assert info["layers"] == 2 and "accuracy" in info["dev"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["head"]["labels"] == ["negative", "positive"] and manifest["attach_depth"] == 2

    res = r.invoke(sweep_cmd, ["--trunk", str(sdk_trunk_dir), "--task", "classification", *_sst(tmp_path), *FAST,
                               "--label-names", "negative,positive",
                               "--min-layers", "0", "--max-layers", "1", "--rule", "marginal:1", "--name", "s",
                               "--table", str(tmp_path / "t.md")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "selected L" in res.output and (tmp_path / "t.md").read_text().startswith("| L (task layers)")

    res = r.invoke(distill_cmd, ["--trunk", str(sdk_trunk_dir), "--teacher", str(out), "--student-layers", "1",
                                 *_sst(tmp_path), *FAST, "--label-names", "negative,positive",
                                 "-o", str(tmp_path / "student")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "student sentiment-l1 (1 layer(s))" in res.output
    assert json.loads((tmp_path / "student" / "manifest.json").read_text())["num_layers"] == 1


def test_user_errors_exit_1_without_traceback(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    from mtbranch.cli.main import cli

    bad = tmp_path / "bad.txt"
    bad.write_text("john X X B-PER\nvisited X X O\nparis X X LOC\n")
    res = CliRunner().invoke(cli, ["train", "--trunk", str(sdk_trunk_dir), "--task", "token-classification",
                                   "--train", str(bad), "--dev", str(bad), "--name", "e", "-o",
                                   str(tmp_path / "e")])
    assert res.exit_code == 1
    assert "line 3" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["sweep", "--trunk", str(sdk_trunk_dir), "--task", "classification",
                                   *_sst(tmp_path), "--min-layers", "1", "--max-layers", "2", "--rule", "nope",
                                   "--name", "s"])
    assert res.exit_code == 2 and "unknown selection rule" in res.output


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from mtbranch.cli import sdk_commands as c\n"
            "for cmd in (c.train_cmd, c.sweep_cmd, c.distill_cmd):\n"
            "    r = CliRunner().invoke(cmd, ['--help']); assert r.exit_code == 0 and 'Examples' in r.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torchrun_two_process_cpu_train(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` (gloo on CPU) trains one branch with DDP; rank 0 exports it."""
    train = write_conll(tmp_path / "train.txt", 48, 1)
    dev = write_conll(tmp_path / "valid.txt", 12, 2)
    out = tmp_path / "entities"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mtbranch.cli.sdk_commands", "train", "--trunk", str(sdk_trunk_dir),
           "--task", "token-classification", "--train", str(train), "--dev", str(dev), *FAST,
           "--epochs", "2", "--layers", "1", "--name", "entities", "-o", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mtbranch.branch.model import load_branch
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.validation.validator import validate

    b = load_branch(out)
    assert b.manifest.training["world_size"] == 2 and b.manifest.num_layers == 1
    report = validate([(out, "local")], load_trunk_source(sdk_trunk_dir))
    assert not report.errors, report.errors
