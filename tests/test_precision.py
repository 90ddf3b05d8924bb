"""Compute dtypes: the ``auto`` rule on simulated hardware, the bf16 exactness guarantee (each branch equals its own
standalone bf16 forward bit for bit; adding a branch leaves the others bit-identical), the CLI options and errors,
and the bench's per-dtype FLOP count and peak probe (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from family_fixtures import FAMILIES, make_family_dir
from torch.utils.flop_counter import FlopCounterMode

from mtbranch.bench.precision import compare_dtypes, composed_flops, parse_dtypes
from mtbranch.bench.timing import make_batch
from mtbranch.branch.model import load_branch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, load, save_composed
from mtbranch.errors import MtbranchError, UsageError
from mtbranch.spec import precision
from mtbranch.spec.precision import Hardware, cpu_flags, float32_only, resolve_dtype
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

from helpers import make_branch

TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city ."]
AVX2 = Hardware("cpu", frozenset({"sse4_2", "avx2", "fma"}))  # a CPU without native bf16
ZEN = Hardware("cpu", frozenset({"avx2", "avx512f", "avx512_bf16"}))
SAPPHIRE = Hardware("cpu", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}))


@pytest.fixture(scope="module")
def branches(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("precision-branches")
    return {
        "sentiment": make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=2, seed=1),
        "entities": make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=3),
        "topics": make_branch(tiny_bert_dir, base / "topics", name="topics", depth=1, layers=0, head="multilabel",
                              pooling="attention", seed=4),
        "probe": make_branch(tiny_bert_dir, base / "probe", name="probe", depth=4, layers=1, pooling="mean", seed=5),
    }


def _dirs(branches: dict[str, Path], *names: str) -> list[tuple[Path, str]]:
    return [(branches[n], "directory") for n in names]


def _args(trunk_dir: Path) -> tuple[torch.Tensor, ...]:
    enc = load_tokenizer(trunk_dir)(TEXTS, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


# -- the auto rule --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("hw", "want"), [
    (AVX2, "float32"), (ZEN, "bfloat16"), (SAPPHIRE, "bfloat16"),
    (Hardware("cuda", frozenset(), cuda_bf16=True), "bfloat16"),
    (Hardware("cuda", frozenset(), cuda_bf16=False), "float32"),
    (Hardware("mps", frozenset({"avx512_bf16"})), "float32"),
])
def test_auto_picks_bf16_only_where_it_is_native(hw: Hardware, want: str) -> None:
    assert resolve_dtype("auto", hw.device_type, hw) == want


def test_explicit_dtypes_aliases_and_float16_on_cpu() -> None:
    assert resolve_dtype(None) == "float32"
    assert resolve_dtype("bf16") == "bfloat16" and resolve_dtype("fp32") == "float32"
    assert resolve_dtype(torch.bfloat16) == "bfloat16"
    assert resolve_dtype("float16", "cuda:0") == "float16"
    with pytest.raises(MtbranchError, match="float16 runs on GPUs only") as exc:
        resolve_dtype("fp16", "cpu")
    assert "bfloat16" in (exc.value.hint or "")
    with pytest.raises(UsageError, match="unknown dtype 'int4'") as exc:
        resolve_dtype("int4")
    assert "auto" in (exc.value.hint or "")
    assert float32_only("auto", "ONNX export", "h") == "float32"
    with pytest.raises(MtbranchError, match="ONNX export supports float32 only, not bfloat16"):
        float32_only("bf16", "ONNX export", "h")


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert Hardware("cpu", cpu_flags(x86)).bf16_cpu_flag == "amx_bf16"
    assert resolve_dtype("auto", "cpu", Hardware("cpu", cpu_flags(arm))) == "float32"  # ARM bf16: not measured
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(("flags", "want"), [({"avx2"}, torch.float32), ({"avx2", "amx_bf16"}, torch.bfloat16)])
def test_load_auto_on_simulated_machines(tiny_bert_dir: Path, branches: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, flags: set[str], want: torch.dtype) -> None:
    save_composed(compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment")), tmp_path / "c")
    monkeypatch.setattr(precision, "cpu_flags", lambda *_a: frozenset(flags))
    model = load(tmp_path / "c", dtype="auto")
    assert {p.dtype for p in model.parameters()} == {want}
    assert model.compute_dtype == str(want).removeprefix("torch.")
    assert "auto:" in model.compute_dtype_reason
    # int8 quantization needs float32 weights: auto gives way
    assert load(tmp_path / "c", dtype="auto", quantize="int8").compute_dtype == "float32"


# -- the bf16 exactness guarantee -----------------------------------------------------------------------------
def test_bf16_branch_equals_its_standalone_bf16_forward_bit_for_bit(tiny_bert_dir: Path,
                                                                     branches: dict[str, Path]) -> None:
    src = load_trunk_source(tiny_bert_dir)
    names = ["sentiment", "entities", "topics", "probe"]
    model = compose(src, _dirs(branches, *names), dtype="bfloat16")
    args = _args(tiny_bert_dir)
    out = model(*args)
    ref32 = compose(src, _dirs(branches, *names))(*args)
    for name in names:
        alone = compose(src, _dirs(branches, name), dtype="bfloat16")  # trunk 1..d + the branch: unmerged
        assert alone.trunk.num_layers == alone.branch(name).manifest.attach_depth
        expected = alone(*args)[name]
        assert out[name].dtype == torch.bfloat16
        assert torch.equal(out[name], expected), name
        assert not torch.equal(out[name].float(), ref32[name]), name  # it really ran in bf16


def test_bf16_adding_and_removing_branches_leaves_others_bit_identical(tiny_bert_dir: Path, branches: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    src = load_trunk_source(tiny_bert_dir)
    args = _args(tiny_bert_dir)
    model = compose(src, _dirs(branches, "sentiment", "topics"), dtype="bfloat16")
    before = model(*args)
    bigger = compose(src, _dirs(branches, "sentiment", "topics", "entities", "probe"), dtype="bfloat16")
    after = bigger(*args)  # the trunk now runs deeper (probe: depth 4) and more branches fork from it
    for name in ("sentiment", "topics"):
        assert torch.equal(before[name], after[name]), name
    bigger.remove_branch("probe")
    again = bigger(*args)
    for name in ("sentiment", "topics", "entities"):
        assert torch.equal(after[name], again[name]), name
    extra = make_branch(tiny_bert_dir, tmp_path / "extra", name="extra", depth=2, layers=1,
                        head="token_classification", seed=8)
    model.put_branch(load_branch(extra))  # a float32 file joins a running bf16 model
    added = model(*args)
    for name in ("sentiment", "topics"):
        assert torch.equal(before[name], added[name]), name
    assert torch.equal(added["extra"], compose(src, _dirs({"extra": extra}, "extra"), dtype="bfloat16")(*args)["extra"])


def test_bf16_on_cpu_runs_eager_attention(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    src = load_trunk_source(tiny_bert_dir)
    model = compose(src, _dirs(branches, "sentiment"), dtype="bfloat16")
    assert model.attention == "eager" and model.trunk.config._attn_implementation == "eager"
    assert model.branch("sentiment").config._attn_implementation == "eager"
    assert compose(src, _dirs(branches, "sentiment")).attention == "sdpa"
    assert precision.attention_for("bfloat16", "cuda:0") == "sdpa"


# -- CLI ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, branches: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("precision") / "composed"
    save_composed(compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment", "entities")), out)
    return out


def test_cli_predict_dtype(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def raw(*opts: str) -> list[float]:
        r = CliRunner().invoke(cli, ["predict", str(artifact), "--json", "--raw", "--task", "sentiment", *opts,
                                     "the movie was very good !"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)[0]["sentiment"]["raw"]

    f32 = load(artifact).predict(["the movie was very good !"], tasks=["sentiment"], raw=True)[0]["sentiment"]["raw"]
    bf16 = load(artifact, dtype="bfloat16").predict(["the movie was very good !"], tasks=["sentiment"],
                                                    raw=True)[0]["sentiment"]["raw"]
    assert f32 != bf16
    assert raw() == f32  # predict's default: float32
    assert raw("--dtype", "bf16") == bf16
    monkeypatch.setattr(precision, "cpu_flags", lambda *_a: AVX2.cpu_flags)
    assert raw("--dtype", "auto") == f32  # a CPU without native bf16: auto is float32
    monkeypatch.setattr(precision, "cpu_flags", lambda *_a: SAPPHIRE.cpu_flags)
    assert raw("--dtype", "auto") == bf16


@pytest.mark.parametrize("argv", [
    ["predict", "{a}", "--dtype", "float16", "x"],
    ["predict", "{a}", "--dtype", "fp16", "--device", "cpu", "x"],
    ["serve", "{a}", "--dtype", "float16"],
    ["export-onnx", "{a}", "-o", "{out}", "--dtype", "bfloat16"],
    ["bench", "--compare-dtypes", "float32,float16", "--no-load-check"],
])
def test_cli_dtype_errors_exit_1_without_traceback(artifact: Path, tmp_path: Path, argv: list[str]) -> None:
    argv = [a.format(a=artifact, out=tmp_path / "onnx") for a in argv]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "float16 runs on GPUs only" in r.output or "supports float32 only" in r.output
    assert not (tmp_path / "onnx").exists()


def test_cli_rejects_unknown_dtype_names(artifact: Path) -> None:
    r = CliRunner().invoke(cli, ["predict", str(artifact), "--dtype", "int4", "x"])
    assert r.exit_code != 0 and "auto" in r.output and "Traceback" not in r.output


# -- bench: FLOPs, peak probe, per-dtype rows -----------------------------------------------------------------
def test_composed_flops_match_torch_flop_counter(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    src = load_trunk_source(tiny_bert_dir)
    model = compose(src, _dirs(branches, "sentiment", "entities", "probe"))
    batch = make_batch(4, 16, int(src.config["vocab_size"]), "cpu")
    for cfg in [model.trunk.config, *(b.config for b in model.branches)]:
        cfg._attn_implementation = "eager"  # the counter does not see inside CPU SDPA kernels; eager is two bmm
    with FlopCounterMode(display=False) as counter:
        model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    mine = composed_flops(model, list(model.branches), 4, 16)
    # the counter also sees the poolers and heads, which the bench leaves out: a few percent on this tiny trunk
    assert mine <= counter.get_total_flops() <= 1.1 * mine


def test_compare_dtypes_rows(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    src = load_trunk_source(tiny_bert_dir)
    batch = make_batch(2, 8, int(src.config["vocab_size"]), "cpu")
    res = compare_dtypes(src, _dirs(branches, "sentiment", "entities"), batch, "bf16,int8",
                         device="cpu", rounds=1, warmup=0, seed=0)
    assert list(res["dtypes"]) == ["float32", "bfloat16", "int8"]  # float32 always measured first: the reference
    f32, bf16 = res["dtypes"]["float32"], res["dtypes"]["bfloat16"]
    assert f32["max_abs_diff_vs_float32"] == 0.0 and bf16["max_abs_diff_vs_float32"] > 0.0
    for row in res["dtypes"].values():
        assert row["gflops"] == pytest.approx(res["flops_per_call"] / (row["p50_ms"] / 1000) / 1e9)
        assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / row["peak_gflops"])
        assert row["peak_probe"]["shape"] == [16, 32, 64]
    assert res["layers_run"] == 3 + 2 + 1


def test_parse_dtypes() -> None:
    assert parse_dtypes("auto,bf16", "cpu")[0] == ("float32", "float32")
    assert dict(parse_dtypes(["float16"], "cuda"))["float16"] == "float16"
    for bad, needle in (("float16", "GPUs only"), ("int8", "CPU only"), ("", "empty"), ("nope", "unknown")):
        with pytest.raises(MtbranchError, match=needle):
            parse_dtypes(bad, "cuda" if bad == "int8" else "cpu")


def test_run_bench_dtypes_only_reports_per_dtype_and_cpu_features(tmp_path: Path) -> None:
    from dataclasses import replace

    from mtbranch.bench.run import run_bench
    from mtbranch.bench.scenarios import SCENARIOS

    tiny = {"hidden_size": 32, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 64,
            "vocab_size": 300, "max_position_embeddings": 64}
    r = run_bench(replace(SCENARIOS["paper-mixed"], trunk=tiny), batch_size=2, seq_len=8, rounds=1, warmup=0,
                  threads=1, workdir=tmp_path, compare="float32,bf16", dtypes_only=True)
    assert "setups" not in r and list(r["precision"]["dtypes"]) == ["float32", "bfloat16"]
    assert r["precision"]["layers_run"] == 33  # the paper's 7 + 26
    assert set(r["machine"]["flags"]) >= {"avx512_bf16", "amx_bf16"} and "torch_cpu_capability" in r["machine"]
    assert r["machine"]["auto_dtype_cpu"] in ("float32", "bfloat16")
    with pytest.raises(UsageError, match="needs --compare-dtypes"):
        run_bench("paper-mixed", dtypes_only=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_guarantee_in_every_trunk_family(family: str, tmp_path: Path) -> None:
    """Each built-in family in bf16 (eager attention on the CPU): a branch composed with another equals its own
    standalone bf16 forward bit for bit."""
    d = make_family_dir(tmp_path / "trunk", family)
    a = make_branch(d, tmp_path / "a", name="a", depth=1, layers=1, seed=1)
    b = make_branch(d, tmp_path / "b", name="b", depth=2, layers=1, head="token_classification", seed=2)
    src = load_trunk_source(d)
    enc = load_tokenizer(d)(["the movie was very good and the plot was great fun", "bad"], padding=True,
                            return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    both = compose(src, [(a, "directory"), (b, "directory")], dtype="bfloat16")
    assert both.attention == "eager"
    out = both(*args)
    for name, path in (("a", a), ("b", b)):
        alone = compose(src, [(path, "directory")], dtype="bfloat16")(*args)[name]
        assert out[name].dtype == torch.bfloat16 and torch.equal(out[name], alone), (family, name)


# -- issue 25: what a team measures is what it serves ---------------------------------------------------------
def test_predict_load_serve_and_ray_share_one_default_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """One default for predict, serve, load and Ray: load's (None: auto, measured; issue 31), unless the
    environment names another; compose and the bench keep float32 (DEFAULT_DTYPE)."""
    import inspect as pyinspect

    from mtbranch.backends.auto import canonical_backend, default_dtype
    from mtbranch.serve import ray_app

    for option in ("dtype", "backend"):
        defaults = {name: {p.name: p for p in cli.commands[name].params}[option].default
                    for name in ("predict", "serve")}
        assert defaults == {"predict": None, "serve": None}
        assert pyinspect.signature(load).parameters[option].default is None
        assert pyinspect.signature(ray_app.build_app).parameters[option].default is None
    monkeypatch.delenv("MTBRANCH_DTYPE", raising=False)
    monkeypatch.delenv("MTBRANCH_BACKEND", raising=False)
    assert default_dtype(None) == "auto" and canonical_backend(None) == "auto"
    monkeypatch.setenv("MTBRANCH_DTYPE", "bfloat16")
    assert default_dtype(None) == "bfloat16" and default_dtype("float32") == "float32"
    assert precision.DEFAULT_DTYPE == "float32" and resolve_dtype(None) == "float32"


def test_serve_start_line_says_when_it_serves_another_dtype(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    import mtbranch.serve.server as server

    monkeypatch.setattr(server, "run_server", lambda *a, **kw: None)  # where `serve` imports it from
    plain = CliRunner().invoke(cli, ["serve", str(artifact), "--port", "1"])
    assert plain.exit_code == 0, plain.output
    assert "(torch float32 (asked for))" in plain.output and "measured in" not in plain.output
    bf16 = CliRunner().invoke(cli, ["serve", str(artifact), "--port", "1", "--dtype", "bfloat16"])
    assert bf16.exit_code == 0, bf16.output
    assert "(asked for); the branches' dev metrics were measured in float32" in bf16.output
    assert "--backend torch --dtype float32 serves exactly what was measured" in bf16.output
