"""``mtbranch bench``: composed vs unmerged vs single-task serving, measured side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mtbranch.bench.scenarios import SCENARIOS
from mtbranch.cli import params as P
from mtbranch.cli.output import console, err_console, print_json
from mtbranch.cli.threads import default_threads, threads_option
from mtbranch.plugins.builtin import mtbranch_trunk_families as builtin_families
from mtbranch.spec.precision import DTYPE_SPELLINGS

SCENARIO_NAMES = tuple(SCENARIOS)  # scenarios.py is plain data: --help imports no torch
FAMILY_NAMES = tuple(f.name for f in builtin_families())  # plain records, no torch


@click.command()
@click.option("--scenario", type=click.Choice(SCENARIO_NAMES), default="paper-mixed", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seq-len", type=click.IntRange(2), default=64, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
              help="Timed rounds; every setup runs once per round, in a shuffled order.")
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)
@threads_option
@click.option("--device", default="cpu", show_default=True, type=P.DEVICE, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(DTYPE_SPELLINGS), default="float32", show_default=True,
              help="Run every setup in this dtype: float32, bfloat16, float16 (GPU only) or auto.")
@click.option("--compare-dtypes", "compare", metavar="LIST", default=None,
              help="Also time the composed model in each of these dtypes (comma-separated: float32, bfloat16, "
                   "float16 on GPUs, auto, int8), with achieved GFLOP/s and the fraction of this machine's matmul "
                   "peak per dtype, and the CPU features detected.")
@click.option("--dtypes-only", is_flag=True, help="With --compare-dtypes: skip the other setups.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep the generated trunk and branches here (reused by the next run).")
@click.option("--no-curve", is_flag=True, help="Skip the time-vs-number-of-tasks measurement.")
@click.option("--no-load-check", is_flag=True, help="Skip the fresh-process load / resident-memory check.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the result here.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Write a PNG of time vs number of tasks here (needs matplotlib: the bench extra).")
@click.option("--family", type=click.Choice(FAMILY_NAMES), default="bert", show_default=True,
              help="Trunk family of the synthetic scenarios' trunk (same dimensions; docs/families.md).")
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench(scenario: str, batch_size: int, seq_len: int, rounds: int, warmup: int, threads: int | None, device: str,
          dtype: str | None, workdir: Path | None, no_curve: bool, no_load_check: bool, json_path: Path | None,
          plot_path: Path | None, output_format: str, compare: str | None, dtypes_only: bool, family: str) -> None:
    """Time the composed model against the same tasks served unmerged and as one full model per task.

    All setups run interleaved, in one process, on the same token batch; the table reports throughput,
    latency p50/p99, weights, the paper's layer overhead and measured / ideal speedup. Synthetic scenarios
    build a random 12-layer, 768-hidden trunk (kept in --workdir); `real` uses the installed plugins.

    \b
    Examples:
      mtbranch bench --scenario paper-mixed --rounds 3 --json bench.json --plot bench.png
      mtbranch bench --scenario real --batch-size 8 --seq-len 32 --rounds 2 --no-load-check
      mtbranch bench --scenario paper-mixed --compare-dtypes float32,bfloat16,int8 --dtypes-only --threads 1
      mtbranch bench --device cuda --compare-dtypes float32,float16,bfloat16 --dtypes-only
      mtbranch bench --scenario xiaoai-21 --family modernbert --rounds 2 --no-load-check
    """
    from mtbranch.errors import require_extra
    from mtbranch.io.guard import check_output
    from mtbranch.spec.precision import check_device

    check_device(device)  # --device cuda on a CPU-only torch: exit 1 before anything is read

    # the outputs are checked before the benchmark runs (minutes): never a FIFO, a device or another file
    if json_path is not None:
        json_path = check_output(json_path, "json", inputs=[workdir])
    if plot_path is not None:
        plot_path = check_output(plot_path, "png", inputs=[workdir, json_path])
        require_extra("bench", "mtbranch bench --plot")
    from mtbranch.bench.plot import plot
    from mtbranch.bench.run import run_bench

    say = (lambda msg: err_console.print(msg, style="dim", markup=False)) if output_format == "text" else None
    result = run_bench(scenario, batch_size=batch_size, seq_len=seq_len, rounds=rounds, warmup=warmup,
                       threads=threads or default_threads(), device=device, dtype=dtype, workdir=workdir,
                       task_curve=not no_curve,
                       load_check=not no_load_check, progress=say, compare=compare, dtypes_only=dtypes_only,
                       family=family)
    if json_path is not None:
        from mtbranch.io.atomic import write_bytes_atomic

        write_bytes_atomic(json_path, (json.dumps(result, indent=2) + "\n").encode())
    if plot_path is not None and "task_curve" in result:
        plot(result, plot_path)
    if output_format == "json":
        print_json(result)
    else:
        print_report(result)


def print_report(r: dict[str, Any]) -> None:
    from rich.table import Table

    cfg = r["config"]
    if "precision" in r:
        print_precision(r)
    if "setups" not in r:
        return
    t = Table(title=f"{r['scenario']}: {r['tasks']} tasks, batch {cfg['batch_size']} x {cfg['seq_len']} tokens, "
                    f"{cfg['device']} {cfg['dtype']}, {cfg['threads']} threads, {cfg['rounds']} rounds")
    for col in ("setup", "layers", "weights MiB", "seq/s", "p50 ms", "p99 ms"):
        t.add_column(col, justify="left" if col == "setup" else "right")
    for name, s in r["setups"].items():
        t.add_row(name, str(s["layers"]), f"{s['weights_mib']:.0f}", f"{s['throughput']:.1f}",
                  f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}")
    console.print(t)
    rat = r["ratios"]
    for base, label in (("full", "single-task serving"), ("standalone", "unmerged branches")):
        x = rat.get(f"composed_vs_{base}")
        if x:
            console.print(f"composed vs {label}: {x['speedup']:.2f}x measured, {x['ideal']:.2f}x ideal "
                          f"(layers) -> efficiency {x['efficiency']:.2f}")
    x = rat.get("subset_vs_composed")
    if x:
        console.print(f"one-task subset: {x['time_fraction']:.3f} of the composed time for "
                      f"{x['layer_fraction']:.3f} of its layers (limit {x['limit']:.3f})")
    ref = r.get("reference")
    if ref:
        console.print(f"one branch ({ref['task']}) composed vs transformers' model: time ratio "
                      f"{ref['time_ratio']:.3f}, max abs diff {ref['max_abs_diff']:.2e}")
    for mode, x in r.get("load", {}).items():
        console.print(f"load ({mode}): {x['load_s']:.2f} s = {x['load_over_read']:.2f}x reading the files once "
                      f"({x['read_s']:.2f} s), {x['load_again_over_read']:.2f}x when loaded again; "
                      f"resident +{(x['rss_after_load'] - x['baseline_rss']) / 2**20:.0f} MiB"
                      f" = {x['rss_over_params']:.2f}x parameter bytes "
                      f"({x['rss_after_forward_over_params']:.2f}x after a first forward)")


def print_precision(r: dict[str, Any]) -> None:
    from rich.table import Table

    cfg, p, m = r["config"], r["precision"], r["machine"]
    flags = ", ".join(f for f, on in m.get("flags", {}).items() if on) or "none of those checked"
    console.print(f"machine: {m.get('cpu')}, {m.get('cpu_count')} CPUs; flags: {flags}; torch CPU capability "
                  f"{m.get('torch_cpu_capability')}; auto -> {m.get('auto_dtype_cpu')}" + (
                      f"; GPU {m['gpu']}" if m.get("gpu") else ""))
    t = Table(title=f"{r['scenario']}: composed model per dtype, batch {cfg['batch_size']} x {cfg['seq_len']} "
                    f"tokens, {cfg['device']}, {cfg['threads']} threads, {p['layers_run']} layers "
                    f"({p['flops_per_call'] / 1e9:.1f} GFLOP per call)")
    for col in ("dtype", "p50 ms", "seq/s", "GFLOP/s", "peak GFLOP/s", "of peak", "vs float32", "max diff"):
        t.add_column(col, justify="left" if col == "dtype" else "right")
    for name, x in p["dtypes"].items():
        t.add_row(x["why"] if name == "auto" else name, f"{x['p50_ms']:.1f}", f"{x['throughput']:.1f}",
                  f"{x['gflops']:.1f}", f"{x['peak_gflops']:.1f}", f"{100 * x['fraction_of_peak']:.0f}%",
                  f"{x['speedup_vs_float32']:.2f}x", f"{x['max_abs_diff_vs_float32']:.1e}")
    console.print(t)
