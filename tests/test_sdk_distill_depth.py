"""Distillation into a deeper student: a full fine-tuning teacher (depth 0) teaches a branch at depth d."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sdk_fixtures
import torch
from click.testing import CliRunner
from sdk_fixtures import conll_data, make_sdk_trunk, pair_data, sentiment_data, write_sentiment

import mtbranch.sdk.distill as distill_mod
from mtbranch.branch.model import load_branch
from mtbranch.cli.sdk_commands import distill_cmd
from mtbranch.errors import MtbranchError
from mtbranch.sdk.distill import branch_outputs, distill
from mtbranch.sdk.train import BranchInfo, DistillSpec, TrainConfig, prepare, train
from mtbranch.trunk.source import resolve_trunk

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (4 layers, fixture)
CFG = TrainConfig(epochs=1, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)
DATA = {"classification": sentiment_data, "regression": pair_data, "token_classification": conll_data}


def _cfg() -> TrainConfig:
    from dataclasses import replace

    return replace(CFG)


@pytest.fixture(scope="module")
def full_teachers(sdk_trunk_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """One fully fine-tuned teacher (depth 0, all 4 layers) per task, with its data."""
    out = {}
    for task, make in DATA.items():
        tmp = tmp_path_factory.mktemp(f"full-{task}")
        tr, dev = make(tmp, 48, 12)
        pooling = "mean" if task == "regression" else "cls"
        cfg = _cfg()
        cfg.pooling = pooling
        train(str(sdk_trunk_dir), task, tr, dev, layers=4, depth=0, cfg=cfg,  # type: ignore[arg-type]
              info=BranchInfo("t"), out_dir=tmp / "teacher")
        out[task] = (tmp / "teacher", tr, dev)
    return out


class _Spy:
    """Counts branch_outputs calls per split and records what fit() was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, str]] = []
        self.fit_kw: dict[str, Any] = {}
        real_outputs, real_fit = distill_mod.branch_outputs, distill_mod.fit

        def outputs(branch: Any, prep: Any, split: str, batch_size: int = 64) -> list[np.ndarray]:
            self.calls.append((branch.manifest.attach_depth, split))
            return real_outputs(branch, prep, split, batch_size)

        def fit(prep: Any, depth: int, layers: int, *a: Any, **kw: Any) -> Any:
            self.fit_kw = dict(kw, depth=depth, layers=layers, prepared_depths=sorted(prep.train_features))
            return real_fit(prep, depth, layers, *a, **kw)

        monkeypatch.setattr(distill_mod, "branch_outputs", outputs)
        monkeypatch.setattr(distill_mod, "fit", fit)


@pytest.mark.parametrize("task", list(DATA))
def test_full_teacher_teaches_deeper_student(sdk_trunk_dir: Path, full_teachers: dict, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    teacher_dir, tr, dev = full_teachers[task]
    teacher = load_branch(teacher_dir)
    spy = _Spy(monkeypatch)
    res = distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=2, student_depth=2,
                  spec=DistillSpec(0.8, 1.5), cfg=_cfg(), out_dir=tmp_path / "student")
    # the teacher ran once on the training set (and once on dev for its score), at its own depth 0
    assert sorted(spy.calls) == [(0, "dev"), (0, "train")]
    assert spy.fit_kw["depth"] == 2 and spy.fit_kw["layers"] == 2
    assert spy.fit_kw["init_state"] is None  # fit() then starts from trunk layers 3..4
    assert spy.fit_kw["distill"] == DistillSpec(0.8, 1.5)
    # the soft targets are the teacher's outputs on depth-0 features, not on the student's depth-2 features
    source = resolve_trunk(str(sdk_trunk_dir))
    cfg = _cfg()
    cfg.pooling, cfg.max_length = teacher.manifest.pooling, teacher.manifest.tokenizer.max_length
    prep = prepare(source, task, tr, dev, cfg, [0, 2], labels=getattr(teacher.manifest.head, "labels", None))  # type: ignore[arg-type]
    expected = branch_outputs(teacher, prep, "train")
    given = spy.fit_kw["teacher_outputs"]
    assert len(given) == len(expected)
    for g, e in zip(given, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    prep.train_features[0] = prep.train_features[2]  # the same teacher on the wrong depth gives other targets
    wrong = branch_outputs(teacher, prep, "train")
    assert not all(np.allclose(g, w, atol=1e-4) for g, w in zip(given, wrong, strict=True))

    student = load_branch(tmp_path / "student")
    m = student.manifest
    assert (m.attach_depth, m.num_layers) == (2, 2)
    assert m.trunk.fingerprint == source.fingerprints[2]
    assert m.pooling == teacher.manifest.pooling and m.name == "t-d2l2"
    d = m.training["distillation"]
    assert d["teacher"]["attach_depth"] == 0 and d["teacher"]["num_layers"] == 4
    assert d["teacher"]["sha256"] == teacher.manifest.weights.sha256
    assert d["student_depth"] == 2 and d["alpha"] == 0.8 and d["temperature"] == 1.5
    assert d["init"] == m.training["init"] == "trunk layers 3..4"
    assert d["init_source"]["from"] == "trunk"
    assert res.metric in res.teacher_metrics and res.metric in res.student.metrics


def test_trunk_init_of_deeper_student(sdk_trunk_dir: Path, full_teachers: dict, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With no training step the student is exactly trunk layers 3..4 (not the teacher's layers 1..2)."""
    teacher_dir, tr, dev = full_teachers["classification"]
    captured: dict[str, Any] = {}
    real_new = distill_mod.fit.__globals__["new_branch"]

    def new_branch(*a: Any, **kw: Any) -> Any:
        captured["module"] = real_new(*a, **kw)
        captured["state"] = {k: v.clone() for k, v in captured["module"].state_dict().items()}
        return captured["module"]

    monkeypatch.setitem(distill_mod.fit.__globals__, "new_branch", new_branch)
    distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=2, student_depth=2, cfg=_cfg())
    from safetensors import safe_open

    with safe_open(str(resolve_trunk(str(sdk_trunk_dir)).weights), framework="pt") as f:
        trunk_layer_3 = f.get_tensor("encoder.layer.2.attention.self.query.weight")
    teacher = load_branch(teacher_dir).state_dict()
    key = "layers.0.attention.self.query.weight"
    torch.testing.assert_close(captured["state"][key], trunk_layer_3)
    assert not torch.allclose(captured["state"][key], teacher[key])


def test_init_from_existing_branch(sdk_trunk_dir: Path, full_teachers: dict, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    teacher_dir, tr, dev = full_teachers["classification"]
    init_dir = tmp_path / "init"
    train(str(sdk_trunk_dir), "classification", tr, dev, layers=2, depth=2, cfg=_cfg(), info=BranchInfo("s"),
          out_dir=init_dir)
    init = load_branch(init_dir)
    spy = _Spy(monkeypatch)
    distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=2, student_depth=2, init_dir=init_dir,
            cfg=_cfg(), out_dir=tmp_path / "student")
    state = spy.fit_kw["init_state"]
    assert state is not None and set(state) == set(init.state_dict())
    for k, v in init.state_dict().items():
        torch.testing.assert_close(state[k], v)
    d = load_branch(tmp_path / "student").manifest.training["distillation"]
    assert d["init_source"]["from"] == "branch" and d["init_source"]["sha256"] == init.manifest.weights.sha256
    assert d["init"].startswith("branch s ")
    # a branch of another size cannot start the student
    with pytest.raises(MtbranchError, match="init branch has 2 layer") as e:
        distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=1, student_depth=3, init_dir=init_dir,
                cfg=_cfg())
    assert e.value.path == str(init_dir / "manifest.json") and e.value.hint


def test_bad_combinations_name_the_file_and_the_fix(sdk_trunk_dir: Path, full_teachers: dict,
                                                    tmp_path: Path) -> None:
    teacher_dir, tr, dev = full_teachers["classification"]
    mid = tmp_path / "mid"
    train(str(sdk_trunk_dir), "classification", tr, dev, layers=2, depth=2, cfg=_cfg(), info=BranchInfo("m"),
          out_dir=mid)
    with pytest.raises(MtbranchError, match="below the teacher's attach depth 2") as e:
        distill(str(sdk_trunk_dir), mid, tr, dev, student_layers=1, student_depth=1, cfg=_cfg())
    assert e.value.path == str(mid / "manifest.json") and "depth >= 2" in (e.value.hint or "")
    with pytest.raises(MtbranchError, match="needs trunk layers up to 5, the trunk has 4") as e:
        distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=2, student_depth=3, cfg=_cfg())
    assert "depth + layers <= 4" in (e.value.hint or "")
    other = make_sdk_trunk(tmp_path / "other-trunk", seed=1)
    with pytest.raises(MtbranchError, match="another trunk") as e:
        distill(str(other), teacher_dir, tr, dev, student_layers=2, student_depth=2, cfg=_cfg())
    assert e.value.path == str(teacher_dir / "manifest.json")
    regression_teacher = full_teachers["regression"][0]
    with pytest.raises(MtbranchError, match="differs from the teacher's") as e:
        distill(str(sdk_trunk_dir), regression_teacher, tr, dev, student_layers=2, student_depth=2, init_dir=mid,
                cfg=_cfg())
    assert e.value.path == str(mid / "manifest.json")


def test_same_depth_path_unchanged(sdk_trunk_dir: Path, full_teachers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """student_depth equal to the teacher's depth is the teacher-initialised path (fewer layers required)."""
    teacher_dir, tr, dev = full_teachers["classification"]
    with pytest.raises(MtbranchError, match="fewer layers"):
        distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=4, student_depth=0, cfg=_cfg())


def test_cli_student_depth_and_init(sdk_trunk_dir: Path, full_teachers: dict, tmp_path: Path) -> None:
    teacher_dir = full_teachers["classification"][0]
    data = ["--train", str(write_sentiment(tmp_path / "train.tsv", 48, 1)), "--dev",
            str(write_sentiment(tmp_path / "dev.tsv", 12, 2)), "--text-col", "sentence", "--label-col", "label"]
    fast = ["--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--no-progress"]
    r = CliRunner()
    res = r.invoke(distill_cmd, ["--trunk", str(sdk_trunk_dir), "--teacher", str(teacher_dir), "--student-depth",
                                 "2", "--student-layers", "2", *data, *fast, "-o", str(tmp_path / "s")],
                   catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "teacher t (4 layers) at depth 0" in res.output
    assert "student t-d2l2 (2 layer(s)) at depth 2" in res.output
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert (m["attach_depth"], m["num_layers"]) == (2, 2)
    res = r.invoke(distill_cmd, ["--trunk", str(sdk_trunk_dir), "--teacher", str(teacher_dir), "--student-depth",
                                 "2", "--student-layers", "2", "--init", str(tmp_path / "s"), *data, *fast,
                                 "--name", "again", "-o", str(tmp_path / "s2"), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["student_depth"] == 2 and info["student_layers"] == 2
    m2 = json.loads((tmp_path / "s2" / "manifest.json").read_text())
    assert m2["training"]["distillation"]["init_source"]["sha256"] == m["weights"]["sha256"]
    from mtbranch.cli.main import cli

    res = r.invoke(cli, ["distill", "--trunk", str(sdk_trunk_dir), "--teacher", str(teacher_dir), "--student-depth",
                         "3", "--student-layers", "2", *data, *fast, "-o", str(tmp_path / "bad")])
    assert res.exit_code == 1 and "needs trunk layers up to 5" in res.output and "Traceback" not in res.output
