"""load(backend=, dtype=): the ONNX Runtime engine answers as torch float32 for every head type, auto picks and says
why, and falls back to torch when onnxruntime is missing or its check fails."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")

from mtbranch.backends import auto, ort
from mtbranch.composition.artifact import compose, load, save_composed, verify_artifact
from mtbranch.composition.model import run_rows
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

TEXTS = ["the movie was great , john visited paris", "bad", "mary works at google in london .", ""]
PAIRS = ["a good film", "the plot", "john is in berlin", "x"]


@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every head type: two classifications forking at one depth, a regression, a token head, a pair task."""
    base = tmp_path_factory.mktemp("backends")
    dirs = [make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=1, seed=1),
            make_branch(tiny_bert_dir, base / "topics", name="topics", depth=2, layers=2, head="multilabel", seed=4),
            make_branch(tiny_bert_dir, base / "score", name="score", depth=3, layers=0, head="regression",
                        pooling="mean", seed=5),
            make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                        head="token_classification", seed=2),
            make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=2, layers=1, head="regression",
                        signature="pair", pooling="mean", seed=3)]
    model = compose(load_trunk_source(tiny_bert_dir), [(d, "directory") for d in dirs])
    save_composed(model, base / "composed")
    return base / "composed"


def _raw(model: Any) -> list[dict[str, Any]]:
    return model.predict(TEXTS, text_pairs=PAIRS, raw=True)


def _flat(x: Any) -> list[float]:
    return [v for item in x for v in _flat(item)] if isinstance(x, list) else [float(x)]


@pytest.mark.slow  # the first ONNX export of the module (about 6 s on a shared core)
def test_onnxruntime_answers_as_torch_float32_for_every_head(artifact: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ref = load(artifact, backend="torch", dtype="float32")
    model = load(artifact, backend="onnxruntime")
    assert model.backend == "onnxruntime" and model.runtime is not None
    calls: list[str] = []
    run = model.runtime.engine.run
    monkeypatch.setattr(model.runtime.engine, "run", lambda sig, *a: calls.append(sig) or run(sig, *a))
    got, want = _raw(model), _raw(ref)
    assert sorted(set(calls)) == ["pair", "single"]  # both graphs answered (per length bucket), not torch
    for g, w in zip(got, want, strict=True):
        for task in w:
            diff = max(abs(a - b) for a, b in zip(_flat(g[task]["raw"]), _flat(w[task]["raw"]), strict=True))
            assert diff <= ort.TOLERANCE, (task, diff)
            g[task].pop("raw"), w[task].pop("raw")
            if "label" in w[task]:
                assert g[task]["label"] == w[task]["label"]
            if "entities" in w[task]:
                assert [e["label"] for e in g[task]["entities"]] == [e["label"] for e in w[task]["entities"]]
    assert verify_artifact(artifact) == []  # the cache lives outside the artifact: its lock still holds


def test_every_layer_is_fused(artifact: Path) -> None:
    """Forks (h_2 read by the trunk and three branches) get their own copies, so each layer's attention fuses."""
    model = load(artifact, backend="onnxruntime")
    info = json.loads((model.runtime.engine.directory / "backend.json").read_text())
    single = [b for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    layers = max(b.manifest.attach_depth for b in single) + sum(b.manifest.num_layers for b in single)
    assert info["fused"]["single"]["Attention"] == layers
    assert info["fused"]["single"]["SkipLayerNormalization"] == 2 * layers
    assert info["fused"]["single"]["EmbedLayerNormalization"] == 1


def test_serving_rows_run_on_onnxruntime_as_on_torch(artifact: Path) -> None:
    ref = load(artifact, backend="torch", dtype="float32")
    model = load(artifact, backend="onnxruntime")
    names = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    ids = [model.tokenizer(t)["input_ids"] for t in TEXTS[:3]]
    got = run_rows(model, ids, [None] * 3, [names] * 3)
    want = run_rows(ref, ids, [None] * 3, [names] * 3)
    for g, w in zip(got, want, strict=True):
        for n in names:
            assert max(abs(a - b) for a, b in zip(_flat(g[n])[:len(_flat(w[n]))], _flat(w[n]), strict=False)) \
                <= ort.TOLERANCE


def test_a_damaged_cache_entry_is_exported_again(artifact: Path) -> None:
    model = load(artifact, backend="onnxruntime")
    graph = model.runtime.engine.directory / "single.onnx"
    graph.write_bytes(b"not an onnx graph")
    again = load(artifact, backend="onnxruntime")
    assert again.backend == "onnxruntime" and graph.stat().st_size > 1000


def test_a_task_subset_runs_in_torch(artifact: Path) -> None:
    model = load(artifact, backend="onnxruntime")
    branch = model.branch("sentiment")
    enc = model.tokenize(TEXTS, None, 64, offsets=False)
    assert model.runtime.signature_for([branch], enc["input_ids"]) is None
    assert model.runtime.signature_for([b for b in model.branches if b.name != "similarity"],
                                       enc["input_ids"]) == "single"


def test_auto_without_onnxruntime_or_openvino_picks_torch(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError, as uninstalled
    monkeypatch.setitem(sys.modules, "openvino", None)
    model = load(artifact, backend="auto", dtype="auto")
    assert model.backend == "torch" and model.runtime is None
    assert "onnxruntime is not installed" in model.backend_reason
    assert model.predict(["good"], tasks=["sentiment"])[0]["sentiment"]["label"] in ("negative", "positive")


def test_auto_measures_reports_and_caches(artifact: Path) -> None:
    first = load(artifact, backend="auto", dtype="auto")
    assert first.backend_reason.startswith("auto: ")
    info = first.backend_info
    assert info is not None and info["rules"] and not info["cached"]
    assert "onnxruntime" in info["seconds"]
    assert all(len(v) == len(auto.PROBES) and all(math.isfinite(s) for s in v) for v in info["seconds"].values())
    assert Path(info["timings_file"]).is_file()
    again = load(artifact, backend="auto", dtype="auto")
    assert again.backend_info["cached"] and again.backend_info["rules"] == info["rules"]
    assert "(cached)" in again.backend_reason


def test_decide_splits_regimes_at_the_geometric_mean() -> None:
    times = {"float32": [3.0, 10.0, 40.0], "onnxruntime": [1.0, 6.0, 30.0], "bfloat16": [2.5, 5.0, 20.0]}
    dtype, rules = auto.decide(times)
    assert dtype == "bfloat16"
    small, mid = auto.PROBES[0][0] * auto.PROBES[0][1], auto.PROBES[1][0] * auto.PROBES[1][1]
    assert rules == [auto.Rule(int(math.sqrt(small * mid)), "onnxruntime"), auto.Rule(None, "torch")]
    assert auto.decide({"float32": [1.0, 1.0, 1.0], "onnxruntime": [2.0, 2.0, 2.0]}) == (
        "float32", [auto.Rule(None, "torch")])


def test_failed_check_falls_back_to_torch(artifact: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ort, "TOLERANCE", -1.0)
    model = load(artifact, backend="onnxruntime")
    assert model.backend == "torch" and model.runtime is None
    assert "differs from torch" in model.backend_reason
    assert any("onnxruntime backend unavailable" in r.getMessage() for r in caplog.records)


def test_onnxruntime_refuses_bfloat16(artifact: Path) -> None:
    from mtbranch.errors import MtbranchError

    with pytest.raises(MtbranchError, match="runs float32"):
        load(artifact, backend="onnxruntime", dtype="bfloat16")


def test_unknown_backend_is_a_usage_error(artifact: Path) -> None:
    from mtbranch.errors import UsageError

    with pytest.raises(UsageError, match="unknown backend"):
        load(artifact, backend="tensorrt")


def test_predict_verbose_says_which_backend(artifact: Path) -> None:
    from click.testing import CliRunner

    from mtbranch.cli.main import cli

    res = CliRunner().invoke(cli, ["predict", str(artifact), "good", "--task", "sentiment", "--backend", "torch",
                                   "--dtype", "float32", "-v", "--json"])
    assert res.exit_code == 0, res.output
    assert "backend: torch float32 (asked for)" in res.stderr
    assert json.loads(res.stdout)[0]["sentiment"]["label"] in ("negative", "positive")


def test_predict_file_verbose_says_which_backend(artifact: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mtbranch.cli.main import cli

    (tmp_path / "in.txt").write_text("good\nbad\n")
    res = CliRunner().invoke(cli, ["predict", str(artifact), "--input", str(tmp_path / "in.txt"), "--task",
                                   "sentiment", "--backend", "torch", "--dtype", "float32", "-v", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "backend: torch float32 (asked for)" in res.stderr
    assert len([ln for ln in res.stdout.splitlines() if ln.strip()]) == 2


# -- OpenVINO --------------------------------------------------------------------------------------------
def _ov_missing() -> str | None:
    from mtbranch.backends import ov

    return ov.available()


needs_openvino = pytest.mark.skipif(_ov_missing() is not None,
                                    reason="openvino not installed (pip install 'mtbranch[openvino]'; in dev)")


@needs_openvino
@pytest.mark.slow  # exports the raw graphs and compiles them twice (about 10 s on a shared core)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_openvino_answers_within_its_bound_for_every_head(artifact: Path, dtype: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbranch.backends import ov

    ref = load(artifact, backend="torch", dtype="float32")
    model = load(artifact, backend="openvino", dtype=dtype)
    assert model.backend == "openvino" and model.runtime is not None
    engine = model.runtime.engine
    assert isinstance(engine, ov.OvEngine) and engine.dtype == dtype
    calls: list[str] = []
    run = engine.run
    monkeypatch.setattr(engine, "run", lambda sig, *a: calls.append(sig) or run(sig, *a))
    got, want = _raw(model), _raw(ref)
    assert sorted(set(calls)) == ["pair", "single"]  # both graphs answered, not torch
    for g, w in zip(got, want, strict=True):
        for task in w:
            ref_raw = _flat(w[task]["raw"])
            diff = max(abs(a - b) for a, b in zip(_flat(g[task]["raw"]), ref_raw, strict=True))
            scale = max([1.0, *map(abs, ref_raw)]) if dtype == "bfloat16" else 1.0
            assert diff / scale <= (ov.BF16_SCALED if dtype == "bfloat16" else ort.TOLERANCE), (task, diff)
    assert verify_artifact(artifact) == []  # the raw graphs are cached outside the artifact too


@needs_openvino
def test_openvino_serving_rows_from_threads(artifact: Path) -> None:
    """Serving runs the model from worker threads: each thread gets its own infer request, same answers."""
    from concurrent.futures import ThreadPoolExecutor

    model = load(artifact, backend="openvino", dtype="float32")
    names = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    ids = [model.tokenizer(t)["input_ids"] for t in TEXTS[:3]]
    want = run_rows(model, ids, [None] * 3, [names] * 3)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: run_rows(model, ids, [None] * 3, [names] * 3), range(8)))
    assert all(g == want for g in got)
    assert len(model.runtime.engine._local.__dict__) == 1  # this thread's requests only: the others kept theirs


@needs_openvino
def test_auto_includes_openvino_when_installed(artifact: Path) -> None:
    model = load(artifact, backend="auto", dtype="auto")
    info = model.backend_info
    assert info is not None and {"openvino", "onnxruntime", "float32"} <= set(info["seconds"])
    assert "openvino" in model.backend_reason


def test_auto_without_openvino_is_as_before(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError, as uninstalled
    model = load(artifact, backend="auto", dtype="auto")
    info = model.backend_info
    assert info is not None and "openvino" not in info["seconds"] and "onnxruntime" in info["seconds"]
    assert "openvino" not in model.backend_reason


def test_backend_openvino_without_the_package_names_the_extra(artifact: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mtbranch.cli.main import cli

    monkeypatch.setitem(sys.modules, "openvino", None)
    res = CliRunner().invoke(cli, ["predict", str(artifact), "good", "--task", "sentiment", "--backend", "openvino"])
    assert res.exit_code == 1, res.output
    assert "pip install 'mtbranch[openvino]'" in res.output and "Traceback" not in res.output


@needs_openvino
@pytest.mark.parametrize(("bound", "value"), [("BF16_LABELS", 1.01), ("BF16_SCALED", -1.0)])  # unmeetable
def test_openvino_failed_check_falls_back_to_torch(artifact: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture, bound: str, value: float) -> None:
    from mtbranch.backends import ov

    monkeypatch.setattr(ov, bound, value)
    model = load(artifact, backend="openvino", dtype="bfloat16")
    assert model.backend == "torch" and model.runtime is None and model.compute_dtype == "bfloat16"
    assert "differs from torch float32" in model.backend_reason
    assert any("openvino backend unavailable" in r.getMessage() for r in caplog.records)


def test_decide_picks_openvino_where_it_is_fastest() -> None:
    times = {"float32": [3.0, 10.0, 40.0], "onnxruntime": [2.0, 6.0, 30.0], "openvino": [2.5, 4.0, 15.0],
             "bfloat16": [2.8, 5.0, 20.0]}
    dtype, rules = auto.decide(times)
    assert dtype == "bfloat16"
    small, mid = auto.PROBES[0][0] * auto.PROBES[0][1], auto.PROBES[1][0] * auto.PROBES[1][1]
    assert rules == [auto.Rule(int(math.sqrt(small * mid)), "onnxruntime"), auto.Rule(None, "openvino")]


@needs_openvino
def test_auto_without_onnxruntime_times_openvino(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = load(artifact, backend="auto", dtype="auto")
    info = model.backend_info
    assert info is not None and "openvino" in info["seconds"] and "onnxruntime" not in info["seconds"]


@needs_openvino
def test_openvino_bf16_answers_say_so(artifact: Path) -> None:
    """The torch model stays float32 under OpenVINO bf16; the serve start line's dtype note reads the engine's."""
    from mtbranch.backends import answer_dtype

    model = load(artifact, backend="openvino", dtype="bfloat16")
    assert model.compute_dtype == "float32" and answer_dtype(model) == "bfloat16"
    assert answer_dtype(load(artifact, backend="openvino", dtype="float32")) == "float32"


def test_auto_with_an_unwritable_cache_answers_on_torch(artifact: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path never fails for want of a cache (a read-only home, a file where the folder should be):
    auto warns and keeps torch, while an explicit --backend onnxruntime reports the file and the fix."""
    blocker = tmp_path / "cache"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("MTBRANCH_CACHE", str(blocker))
    model = load(artifact, backend="auto", dtype="auto")
    assert model.backend == "torch" and model.runtime is None
    assert "not usable here" in model.backend_reason
    assert len(_raw(model)) == len(TEXTS)  # it answers
    from mtbranch.errors import MtbranchError

    with pytest.raises(MtbranchError, match=str(blocker)):
        load(artifact, backend="onnxruntime")


def test_auto_probes_no_longer_than_the_trunk_reads(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto times its probes at most as long as the model's inputs can be: a 128-token probe on a trunk of 64
    positions was an internal error (exit 2) at the first predict."""
    monkeypatch.setattr(auto, "PROBES", ((1, 16), (1, 100_000)))
    model = load(artifact, backend="auto", dtype="auto")
    assert model.backend_info is not None and len(model.backend_info["seconds"]["float32"]) == 2
    assert len(_raw(model)) == len(TEXTS)
