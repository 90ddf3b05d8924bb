"""`mtbranch train|sweep|distill`: runs, user errors without tracebacks, light --help, and a 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
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
            "--label-names", "negative,positive", "--layers", "2", "--name", "sentiment", "-o", str(out), "--json",
            "--tag", "safety", "--tag", "reviews"]
    res = r.invoke(train_cmd, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)  # --json: only the result on stdout, Trainer's logs on stderr
    assert info["layers"] == 2 and "accuracy" in info["dev"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["head"]["labels"] == ["negative", "positive"] and manifest["attach_depth"] == 2
    assert manifest["tags"] == ["safety", "reviews"]  # --tag, in the order given

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


@pytest.mark.parametrize(("tags", "says"), [(["Safety"], "'Safety' is not a valid tag"),
                                            (["has space"], "'has space' is not a valid tag"),
                                            (["safety", "safety"], "'safety' is given twice")])
@pytest.mark.parametrize("command", ["train", "build"])
def test_bad_tags_are_refused_before_any_work(tmp_path: Path, command: str, tags: list[str], says: str) -> None:
    """A tag the manifest's tags field would refuse is a user error (exit 1) naming the field and the fix, while
    the options are parsed: nothing is read (the data and recipe paths do not exist) and nothing written."""
    from mtbranch.cli.main import cli

    if command == "train":
        args = ["train", "--trunk", str(tmp_path / "no-trunk"), "--task", "classification", "--train",
                str(tmp_path / "no.tsv"), "--dev", str(tmp_path / "no.tsv"), "--name", "s", "-o", str(tmp_path / "o")]
    else:
        args = ["build", str(tmp_path / "no-recipe.toml")]
    res = CliRunner().invoke(cli, [*args, *[x for t in tags for x in ("--tag", t)]])
    assert res.exit_code == 1, res.output
    assert says in res.output and "'tags'" in res.output and "hint:" in res.output
    assert "Traceback" not in res.output and list(tmp_path.iterdir()) == []


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from mtbranch.cli import sdk_commands as c\n"
            "for cmd in (c.train_cmd, c.sweep_cmd, c.distill_cmd):\n"
            "    r = CliRunner().invoke(cmd, ['--help']); assert r.exit_code == 0 and 'Examples' in r.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
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


def _captured_config(monkeypatch: object, trunk: Path, tmp_path: Path, extra: list[str]) -> object:
    """The TrainConfig `mtbranch train` passes to the SDK (training itself replaced by a stub)."""
    import mtbranch.sdk.train as sdk_train

    seen: dict[str, object] = {}

    def fake_train(*a: object, cfg: object = None, **kw: object) -> object:
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(sdk_train, "train", fake_train)  # type: ignore[attr-defined]
    res = CliRunner().invoke(train_cmd, ["--trunk", str(trunk), "--task", "classification", *_sst(tmp_path),
                                         "--name", "s", "-o", str(tmp_path / "out"), *extra])
    assert "cfg" in seen, res.output
    return seen["cfg"]


def test_train_defaults_are_the_ones_build_proved(sdk_trunk_dir: Path, tmp_path: Path, monkeypatch: object) -> None:
    """Issue 25: lr 3e-4, up to 8 epochs with patience 2 (build's [train] defaults), 1e-4 for full fine-tuning."""
    from mtbranch.sdk.build import TeacherSection, TrainSection

    cfg = _captured_config(monkeypatch, sdk_trunk_dir, tmp_path, [])
    build = TrainSection()
    assert (cfg.lr, cfg.epochs, cfg.patience) == (build.lr, build.epochs, build.patience) == (3e-4, 8.0, 2)
    full = _captured_config(monkeypatch, sdk_trunk_dir, tmp_path, ["--full"])
    assert full.lr == TeacherSection().lr == 1e-4
    off = _captured_config(monkeypatch, sdk_trunk_dir, tmp_path, ["--patience", "0", "--epochs", "3", "--lr", "1e-3"])
    assert (off.lr, off.epochs, off.patience) == (1e-3, 3.0, None)


def test_best_epoch_at_the_ceiling_warns_still_improving(caplog: object) -> None:
    from mtbranch.sdk.train import _warn_if_still_improving

    rows = [{"epoch": 1.0}, {"epoch": 2.0}, {"epoch": 3.0}]
    with caplog.at_level("WARNING", logger="mtbranch"):  # type: ignore[attr-defined]
        _warn_if_still_improving(rows, 2.0, 3.0)  # best before the last: nothing to say
        _warn_if_still_improving(rows, 3.0, 8.0)  # stopped before the ceiling (interrupted): not this warning
        assert "still improving" not in caplog.text  # type: ignore[attr-defined]
        _warn_if_still_improving(rows, 3.0, 3.0)
    assert "best dev epoch is the last one (3 of 3): still improving: raise --epochs" in caplog.text  # type: ignore


def test_train_cli_prints_the_still_improving_warning(sdk_trunk_dir: Path, tmp_path: Path,
                                                     monkeypatch: object, caplog: object) -> None:
    """Every epoch better than the last (forced: tiny dev sets tie): the user is told to raise --epochs."""
    import mtbranch.sdk.train as sdk_train
    from mtbranch.cli.main import cli

    monkeypatch.setattr(sdk_train, "_better", lambda training, metric, new, old: True)  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="mtbranch"):  # type: ignore[attr-defined]
        res = CliRunner().invoke(cli, ["train", "--trunk", str(sdk_trunk_dir), "--task", "classification",
                                       *_sst(tmp_path), "--epochs", "2", "--batch-size", "16", "--max-length", "32",
                                       "--no-progress", "--name", "s", "-o", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["best_epoch"] == 2.0 and info["still_improving"] is True
    assert "the best dev epoch is the last one (2 of 2): still improving: raise --epochs" in caplog.text  # type: ignore


def test_label_names_apply_to_named_single_labels_only(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """--label-names renames one class label per example (looked up on the task's training side, not by its name):
    for token tags it is a usage error naming the task, before any training."""
    from mtbranch.cli.main import cli

    conll = write_conll(tmp_path / "train.txt", 16, 1)
    res = CliRunner().invoke(cli, ["train", "--trunk", str(sdk_trunk_dir), "--task", "token-classification",
                                         "--train", str(conll), "--dev", str(conll), *FAST,
                                         "--label-names", "a,b", "--name", "ents", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output  # a usage error (the CLI's exit code for them), no traceback
    assert "Traceback" not in res.output
    assert "--label-names applies to tasks with one named label per example" in res.output
    assert "token_classification" in res.output and not (tmp_path / "out").exists()
