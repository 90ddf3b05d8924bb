"""``mtbranch serve`` and ``mtbranch export-onnx``. Heavy imports (torch, FastAPI, ONNX) stay inside the bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mtbranch.backends import answer_dtype
from mtbranch.cli import params as P
from mtbranch.cli.output import console, err_console, esc
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.serve.schema import ServeSettings
from mtbranch.spec.precision import (
    DTYPE_SPELLINGS,
    check_device,
    metrics_note,
    resolve_dtype,
)

_D = ServeSettings()  # every serving default has one home: mtbranch.serve.schema.ServeSettings


def _check_tasks(artifact: Path, tasks: tuple[str, ...], option: str = "--task") -> list[str] | None:
    from mtbranch.composition.artifact import read_lock
    from mtbranch.errors import UsageError

    names = read_lock(artifact).names
    unknown = [t for t in tasks if t not in names]
    if unknown:
        raise UsageError(f"unknown {option} {', '.join(unknown)}", hint=f"tasks in {artifact}: {', '.join(names)}")
    return list(tasks) or None


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: all interfaces).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Serve only these tasks (repeatable); the trunk is loaded only as deep as they need.")
@click.option("--max-batch-size", default=_D.max_batch_size, show_default=True, type=click.IntRange(1),
              help="Most sequences per trunk pass (a text run by single-text and pair tasks counts twice); "
                   "the same meaning on Ray.")
@click.option("--max-batch-tokens", default=None, type=click.IntRange(1),
              help="Most padded tokens per trunk pass (sequences x the longest), like TEI's. Default: no limit.")
@click.option("--max-padding", default=_D.max_padding, show_default=True, type=P.FRACTION,
              help="Length buckets: a batch's sequences, sorted by length, are cut into passes each at most this "
                   "fraction padding (1: one pass per batch, as before).")
@click.option("--max-batch-wait-ms", default=_D.max_batch_wait_ms, show_default=True, type=P.Finite(0, 60_000),
              help="How long the first request of a batch waits for others.")
@click.option("--max-queue", default=_D.max_queue, show_default=True, type=click.IntRange(1),
              help="Most /predict requests admitted at once; the next gets 503 JSON with Retry-After.")
@click.option("--request-timeout", default=_D.request_timeout_s, show_default=True,
              type=P.POSITIVE_SECONDS,
              help="Seconds a request may wait for its answer before it gets 503 (and is dropped from the queue).")
@click.option("--read-timeout", default=_D.read_timeout_s, show_default=True, type=P.POSITIVE_SECONDS,
              help="Seconds for a request's head and body to arrive (slow clients are cut off / get 408).")
@click.option("--keep-alive", default=_D.keep_alive_s, show_default=True, type=P.POSITIVE_SECONDS,
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--grace", default=_D.grace_s, show_default=True, type=P.SECONDS,
              help="SIGTERM: seconds to answer requests in flight; the rest then get 503 JSON.")
@click.option("--drain-delay", default=_D.drain_delay_s, show_default=True, type=P.SECONDS,
              help="SIGTERM: seconds readiness reports 503 before the listener closes (load balancer catch-up).")
@click.option("--admin-token-env", default="MTBRANCH_ADMIN_TOKEN", show_default=True, metavar="VAR",
              help="Environment variable holding the bearer token for POST /admin/reload (hot swap); unset: off.")
@click.option("--max-body-bytes", default=_D.limits.max_body_bytes, show_default=True, type=click.IntRange(1))
@click.option("--max-texts", default=_D.limits.max_texts, show_default=True, type=click.IntRange(1),
              help="Texts per request.")
@click.option("--max-chars", default=_D.limits.max_chars, show_default=True, type=click.IntRange(1),
              help="Characters per text.")
@click.option("--quota", "quotas", multiple=True, metavar="OWNER=TEXTS_PER_S",
              help="Texts per second for the tasks of one owner (manifest owner; '*': each owner without one); "
                   "over it: 429 with Retry-After (repeatable). Requests queue round-robin per owner.")
@click.option("--quota-burst", "quota_burst", default=_D.quota_burst_s, show_default=True, type=P.Finite(0, 3600),
              help="Seconds of its quota an owner may send at once after idling (its bucket's size; at least one "
                   "text). Smaller: a team's burst above its quota weighs less on the others (docs/serving.md).")
@threads_option
@click.option("--device", default="cpu", show_default=True, type=P.DEVICE, help="cpu, cuda, cuda:1, mps...")
@P.backend_options
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check against the lock file.")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="CPU fast path: int8 dynamic quantization of the transformer layers (see docs/benchmarks.md).")
@click.option("--model-name", default=_D.model_name, show_default=True,
              help="The model's name under the v2 inference protocol (/v2/models/NAME) and in vLLM's `model`.")
@click.option("--classify-task", default=None, metavar="NAME",
              help="The task TEI's /predict (a body with `inputs`) and vLLM's /classify answer for by default. "
                   "Default: the only single-text classification task.")
@click.option("--otel/--no-otel", default=None,
              help="OpenTelemetry spans exported with the standard OTLP exporter (OTEL_EXPORTER_OTLP_* variables). "
                   "Default: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(artifact: Path, host: str, port: int, tasks: tuple[str, ...], max_batch_size: int,
          max_batch_tokens: int | None, max_padding: float, max_batch_wait_ms: float, max_queue: int,
          request_timeout: float, read_timeout: float, keep_alive: float, grace: float, drain_delay: float,
          admin_token_env: str,
          max_body_bytes: int, max_texts: int, max_chars: int, quotas: tuple[str, ...], quota_burst: float,
          threads: int | None,
          device: str, dtype: str | None, backend: str | None, no_verify: bool, quantize: str | None, model_name: str,
          classify_task: str | None, otel: bool | None, log_level: str) -> None:
    """Serve a composed artifact over HTTP (FastAPI + uvicorn) with request batching.

    \b
    Endpoints: POST /predict, GET /health, GET /ready, GET /tasks, GET /stats, GET /metrics,
    POST /admin/reload (hot swap, bearer token), GET /openapi.json. SIGTERM drains (see docs/serving.md).
    Standard shapes beside them: the v2 inference protocol (/v2/..., KServe and Triton clients),
    TEI's /predict (a body with `inputs`) and vLLM's /classify.
    Example:
      mtbranch serve composed/ --port 8000 --max-batch-wait-ms 5
      curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["I loved it"]}'
    """
    from mtbranch.errors import require_extra

    require_extra("serve", "mtbranch serve")
    import logging
    import os

    from mtbranch.composition.artifact import load
    from mtbranch.serve.app import ServeSettings, create_app
    from mtbranch.serve.fair import parse_quotas
    from mtbranch.serve.schema import Limits
    from mtbranch.serve.server import run_server

    check_device(device)  # --device cuda on a CPU-only torch: exit 1 before anything is read
    owner_quotas = parse_quotas(quotas)
    apply_threads(threads)
    subset = _check_tasks(artifact, tasks)
    if classify_task is not None:
        _check_tasks(artifact, (classify_task,), "--classify-task")
    tracer_provider = _tracer_provider(otel)
    resolve_dtype(dtype, device)  # float16 on the CPU: a user error before anything is loaded
    with console.status("loading..."):
        load_kwargs: dict[str, Any] = {"verify": not no_verify, "device": device, "dtype": dtype, "tasks": subset,
                       "quantize": quantize, "backend": backend}
        model = load(artifact, **load_kwargs)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                             max_padding=max_padding, max_batch_wait_ms=max_batch_wait_ms, max_queue=max_queue,
                             request_timeout_s=request_timeout, read_timeout_s=read_timeout, keep_alive_s=keep_alive,
                             grace_s=grace, drain_delay_s=drain_delay,
                             admin_token=os.environ.get(admin_token_env) or None, quotas=owner_quotas,
                             quota_burst_s=quota_burst,
                             model_name=model_name, classify_task=classify_task,
                             limits=Limits(max_body_bytes=max_body_bytes, max_texts=max_texts, max_chars=max_chars))
    # one line (soft_wrap): logs and scripts grep the start line
    err_console.print(f"serving {', '.join(model.task_names)} from {artifact} on http://{host}:{port} "
                      f"({model.backend_reason}{metrics_note(answer_dtype(model))})", markup=False,
                      soft_wrap=True)
    app = create_app(model, artifact=artifact, settings=settings, load_kwargs={**load_kwargs, "verify": True},
                     tracer_provider=tracer_provider)
    run_server(app, host, port, log_level=log_level, settings=settings)


def _tracer_provider(flag: bool | None) -> Any:
    """The OpenTelemetry tracer provider (``--otel``, or an OTLP endpoint in the environment), else ``None``."""
    from mtbranch.errors import MissingExtra, require_extra
    from mtbranch.serve import tracing

    if not tracing.wanted(flag):
        return None
    try:
        require_extra("otel", "mtbranch serve --otel")
    except MissingExtra as exc:
        if flag:  # asked for: an error; only an endpoint in the environment: a warning, serving untraced
            raise
        err_console.print(f"warning: OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off: {exc.message} "
                          f"({exc.install})", markup=False)
        return None
    return tracing.provider_from_env()


@click.command("export-onnx")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Directory for model.onnx, onnx.json and the tokenizer (replaced atomically).")
@click.option("--task", "tasks", multiple=True, metavar="NAME", help="Export only these tasks (repeatable).")
@click.option("--triton", "triton", type=click.Path(path_type=Path), default=None,
              help="Also write a Triton Inference Server model repository here (config.pbtxt + 1/model.onnx).")
@click.option("--triton-name", default="mtbranch", show_default=True, help="Model name in the Triton repository.")
@click.option("--opset", type=click.IntRange(18), default=None, help="ONNX opset (default: the exporter's).")
@click.option("--no-check", is_flag=True, help="Skip the ONNX Runtime vs PyTorch comparison after export.")
@click.option("--dtype", type=click.Choice(DTYPE_SPELLINGS), default="float32", show_default=True,
              help="The graph's dtype: float32 only (auto means float32 here); bfloat16/float16 are refused.")
def export_onnx(artifact: Path, out: Path, tasks: tuple[str, ...], triton: Path | None, triton_name: str,
                opset: int | None, no_check: bool, dtype: str) -> None:
    """Export a composed artifact as one ONNX graph with a named output per task.

    \b
    Inputs input_ids, attention_mask, token_type_ids [batch, sequence]; one output per task (raw head
    outputs: [batch, labels] or [batch, sequence, labels]). Pair tasks read the pair encoding: see
    docs/serving.md. After export the graph is run with ONNX Runtime and compared with PyTorch.
    Example:
      mtbranch export-onnx composed/ -o composed-onnx/ --triton triton-repo/
    """
    from mtbranch.errors import require_extra

    require_extra("onnx", "mtbranch export-onnx")
    from mtbranch.export.onnx import ONNX_DTYPE_HINT, check_opset
    from mtbranch.spec.precision import float32_only

    float32_only(dtype, "ONNX export", ONNX_DTYPE_HINT)  # before loading anything
    check_opset(opset)
    from mtbranch.composition.artifact import load
    from mtbranch.export.onnx import check_onnx, write_triton_repository
    from mtbranch.export.onnx import export_onnx as do_export
    from mtbranch.io.guard import check_output, output_path

    out = check_output(out, "onnx", inputs=[artifact])  # before loading or exporting anything
    if triton is not None:  # the Triton model directory too: never inside the artifact or the ONNX output
        check_output(output_path(triton) / triton_name, "triton", inputs=[artifact, out])
    subset = _check_tasks(artifact, tasks)
    with console.status("exporting..."):
        model = load(artifact, tasks=subset, backend="torch", dtype="float32")
        info = do_export(model, out, opset=opset)
    console.print(f"[green]exported[/] {', '.join(o['name'] for o in info['outputs'])} -> {esc(out / 'model.onnx')}")
    if not no_check:
        diffs: dict[str, Any] = check_onnx(model, out)
        worst = max(diffs.values())
        for name, d in diffs.items():
            console.print(f"  {name}: max abs diff vs PyTorch {d:.2e}")
        if worst > 1e-4:
            from mtbranch.errors import MtbranchError

            raise MtbranchError(f"ONNX Runtime output differs from PyTorch by {worst:.2e} (> 1e-4)", path=str(out),
                                hint="report it with the torch/onnxruntime versions; try --opset")
    if triton is not None:
        repo = write_triton_repository(out, triton, name=triton_name, inputs=[artifact])
        console.print(f"[green]triton[/] model repository -> {esc(repo)}")
