"""The bench's bookkeeping and correctness on a tiny trunk (no timing assertions: the bench is its own command)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtbranch.bench.run import run_bench
from mtbranch.bench.scenarios import SCENARIOS, expected_layers
from mtbranch.cli.main import cli

TINY = {"hidden_size": 32, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 64,
        "vocab_size": 300, "max_position_embeddings": 64}


def tiny(name: str):
    return replace(SCENARIOS[name], trunk=TINY)


@pytest.fixture(scope="module")
def paper_mixed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bench")
    return run_bench(tiny("paper-mixed"), batch_size=2, seq_len=8, rounds=2, warmup=0, threads=1, workdir=work)


@pytest.mark.slow
def test_paper_mixed_layer_counts_are_the_papers(paper_mixed: dict) -> None:
    rows = paper_mixed["setups"]
    assert (rows["composed"]["layers"], rows["standalone"]["layers"], rows["full"]["layers"]) == (33, 62, 96)
    # the layers counted on the built models agree with the arithmetic on the plan
    assert {k: rows[k]["layers"] for k in ("composed", "standalone", "full")} == expected_layers(
        SCENARIOS["paper-mixed"])
    assert rows["subset"]["layers"] == 3 and rows["one-branch"]["layers"] == 12  # qqp (2,1); cola (4,8)
    ideal = paper_mixed["ratios"]["composed_vs_full"]["ideal"]
    assert ideal == pytest.approx(96 / 33)
    assert paper_mixed["ratios"]["composed_vs_standalone"]["ideal"] == pytest.approx(62 / 33)
    assert paper_mixed["ratios"]["subset_vs_composed"]["limit"] == pytest.approx(1.2 * 3 / 33)
    assert set(rows["full"]["per_task_ms"]) == {p.name for p in SCENARIOS["paper-mixed"].branches}
    assert all(r["rounds"] == 2 for r in rows.values())


def test_one_branch_equals_transformers_model(paper_mixed: dict) -> None:
    # the composed branch and transformers' BertForSequenceClassification built from the same tensors
    assert paper_mixed["reference"]["task"] == "cola"
    assert paper_mixed["reference"]["max_abs_diff"] <= 1e-5


def test_task_curve_and_unmerged_costs_add_up(paper_mixed: dict) -> None:
    curve = paper_mixed["task_curve"]
    assert curve["tasks"] == list(range(1, 9))
    assert len(curve["composed"]) == len(curve["full"]) == len(curve["standalone"]) == 8
    per_task = paper_mixed["setups"]["full"]["per_task_ms"]
    assert curve["full"][-1] == pytest.approx(sum(per_task.values()))


def test_load_check_reports_both_modes(paper_mixed: dict) -> None:
    for mode in ("no-verify", "verify"):
        load = paper_mixed["load"][mode]
        assert load["param_bytes"] > 0 and load["files_bytes"] >= load["param_bytes"]
        assert load["load_over_read"] == pytest.approx(load["load_s"] / load["read_s"])


def _mapped_file(ptr: int) -> str | None:
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= ptr < hi:
            return parts[5] if len(parts) == 6 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see mappings")
def test_loaded_weights_are_the_files_mapped_pages(paper_mixed: dict, tmp_path_factory) -> None:
    from mtbranch.composition.artifact import load

    art = next(Path(p) for p in tmp_path_factory.getbasetemp().glob("bench*/paper-mixed/composed"))
    model = load(art)
    trunk_w = model.trunk.layers[0].intermediate.dense.weight
    branch_w = model.branch("cola").layers[0].intermediate.dense.weight
    assert _mapped_file(trunk_w.data_ptr()).endswith("trunk/model.safetensors")
    assert _mapped_file(branch_w.data_ptr()).endswith("branches/cola/branch.safetensors")


def test_xiaoai_scenario_is_the_papers_allocation() -> None:
    # paper, appendix E: 21 tasks on 8 shared layers, 40 layers in all, against 21 x 12 single-task layers
    sc = SCENARIOS["xiaoai-21"]
    assert len(sc.branches) == 21
    assert expected_layers(sc) == {"composed": 40, "standalone": 21 * 8 + 32, "full": 21 * 12}
    deeper = replace(sc, branches=(*sc.branches[:-1], replace(sc.branches[-1], depth=9)))
    assert expected_layers(deeper)["composed"] == 41  # the trunk runs to the deepest branch


def test_load_probe_is_a_module_with_a_usage_line() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mtbranch.bench.load_probe"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: python -m mtbranch.bench.load_probe" in proc.stderr


def test_cli_writes_json_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mtbranch.bench.scenarios as bench_mod

    three = replace(tiny("xiaoai-21"), branches=tiny("xiaoai-21").branches[:3], subset_task="task02")
    monkeypatch.setitem(bench_mod.SCENARIOS, "xiaoai-21", three)
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(cli, ["bench", "--scenario", "xiaoai-21", "--batch-size", "2", "--seq-len", "8",
                                   "--rounds", "1", "--warmup", "0", "--threads", "1", "--no-load-check",
                                   "--workdir", str(tmp_path / "w"), "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["tasks"] == 3
    assert {k: data["setups"][k]["layers"] for k in ("composed", "standalone", "full")} == expected_layers(three)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "efficiency" in res.output


def test_unknown_scenario_is_a_usage_error() -> None:
    from mtbranch.errors import UsageError

    with pytest.raises(UsageError):
        run_bench("nope")


@pytest.mark.parametrize("family", ["modernbert", "deberta-v2", "distilbert"])
def test_bench_family_option(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench --family` builds the synthetic trunk in that family (same dimensions) and runs every setup but the
    BERT-only transformers reference."""
    import mtbranch.bench.scenarios as bench_mod

    three = replace(tiny("xiaoai-21"), branches=tiny("xiaoai-21").branches[:3], subset_task="task02")
    monkeypatch.setitem(bench_mod.SCENARIOS, "xiaoai-21", three)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["bench", "--scenario", "xiaoai-21", "--family", family, "--batch-size", "2",
                                   "--seq-len", "8", "--rounds", "1", "--warmup", "0", "--threads", "1",
                                   "--no-load-check", "--no-curve", "--workdir", str(tmp_path / "w"),
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["config"]["family"] == family and data["tasks"] == 3
    assert {k: data["setups"][k]["layers"] for k in ("composed", "standalone", "full")} == expected_layers(three)
    assert "reference" not in data
