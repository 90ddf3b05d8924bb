"""Issue 30, item 4: every numeric option is finite and in range before work starts; nothing diverged ships.

The option test enumerates the commands by introspection, so a new command's numeric options are covered
without being listed here.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import sdk_fixtures
import torch
from click.testing import CliRunner
from sdk_fixtures import sentiment_data

from mtbranch.cli.main import cli
from mtbranch.sdk.divergence import TrainingDiverged
from mtbranch.sdk.train import BranchInfo, TrainConfig, train

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)


NUMBER_TYPES = (click.types.FloatParamType, click.types.IntParamType)  # the Range types subclass these


def numeric_options() -> list[tuple[list[str], str]]:
    """(command path, option) for every option of every command whose type is a float or an int."""
    found: list[tuple[list[str], str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, NUMBER_TYPES):
                found.append((path, max(p.opts, key=len)))

    walk(cli, [])
    return found


OPTIONS = numeric_options()


def test_the_enumeration_finds_the_options_the_issue_names() -> None:
    names = {(" ".join(path), opt) for path, opt in OPTIONS}
    assert len(OPTIONS) >= 50
    for want in [("train", "--lr"), ("train", "--epochs"), ("distill", "--temperature"), ("serve", "--grace"),
                 ("serve", "--keep-alive"), ("serve", "--drain-delay"), ("serve", "--read-timeout"),
                 ("export-onnx", "--opset"), ("build", "--threads"), ("bench", "--rounds")]:
        assert want in names


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("path", "opt"), OPTIONS, ids=[f"{' '.join(p)} {o}" for p, o in OPTIONS])
def test_numeric_option_refuses_non_finite(path: list[str], opt: str, value: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, [*path, opt, value], catch_exceptions=False)
    assert r.exit_code == 2, r.output  # a usage error, as click's own range errors
    assert f"Invalid value for '{opt}'" in r.output, r.output  # refused for this option, not a missing one
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--lr", "1e30"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--warmup", "2"], "--warmup"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--dev-split", "1"], "--dev-split"),
    (["distill", "--alpha", "1.5"], "--alpha"),
    (["distill", "--temperature", "0"], "--temperature"),
    (["serve", "--grace", "1e9"], "--grace"),
    (["serve", "--keep-alive", "0"], "--keep-alive"),
])
def test_numeric_option_out_of_range(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 2 and f"Invalid value for '{needle}'" in r.output, r.output


@pytest.mark.parametrize("args", [["predict", "NOPE", "x"], ["serve", "NOPE"], ["bench"]])
def test_cuda_device_without_cuda_is_refused_before_work(args: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked first in the command (documented `--device cuda` examples still parse on a CPU machine)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [str(tmp_path / "none") if a == "NOPE" else a for a in args]
    r = CliRunner().invoke(cli, [*argv, "--device", "cuda"], catch_exceptions=False)
    assert r.exit_code == 1 and "device 'cuda'" in r.output and "CUDA" in r.output, r.output


@pytest.mark.parametrize("value", ["gpu9", "cuda:x", "nan"])
def test_misspelt_device_is_refused_while_parsing(value: str) -> None:
    r = CliRunner().invoke(cli, ["predict", "--device", value], catch_exceptions=False)
    assert r.exit_code == 2 and "Invalid value for '--device'" in r.output, r.output


def test_onnx_opset_past_the_installed_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    r = CliRunner().invoke(cli, ["export-onnx", str(tmp_path / "none"), "-o", str(tmp_path / "o"), "--opset", "999"],
                           catch_exceptions=False)
    assert r.exit_code == 1 and "--opset 999 is outside 18.." in r.output, r.output


def test_non_finite_train_config_is_refused_before_work(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    tr, dev = sentiment_data(tmp_path, 20, 10)
    with pytest.raises(Exception, match=r"TrainConfig.lr is inf"):
        train(str(sdk_trunk_dir), "classification", tr, dev, layers=1, cfg=TrainConfig(lr=float("inf")))


def test_diverging_training_stops_naming_epoch_and_step_and_exports_nothing(sdk_trunk_dir: Path,
                                                                            tmp_path: Path) -> None:
    tr, dev = sentiment_data(tmp_path, 32, 8)
    cfg = TrainConfig(epochs=2, lr=1e30, head_lr=1e30, batch_size=8, max_length=16, progress=False)
    out = tmp_path / "branch"
    with pytest.raises(TrainingDiverged, match=r"diverged \(epoch \d+\.\d+, step \d+\)") as exc:
        train(str(sdk_trunk_dir), "classification", tr, dev, layers=1, cfg=cfg, info=BranchInfo("x"), out_dir=out)
    assert "nothing was exported" in str(exc.value)
    assert not out.exists()


@pytest.mark.parametrize("field", ["grace_s", "keep_alive_s", "drain_delay_s", "read_timeout_s", "request_timeout_s",
                                   "max_batch_wait_ms"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_serve_settings_refuse_non_finite(field: str, value: float) -> None:
    """Python callers of create_app / Ray's build_app get the checks the CLI's option types make."""
    from mtbranch.errors import MtbranchError
    from mtbranch.serve.schema import ServeSettings

    with pytest.raises(MtbranchError, match=f"ServeSettings.{field}"):
        ServeSettings(**{field: value})
