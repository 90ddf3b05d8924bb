"""Standard request shapes beside the native ``/predict``: what they share.

Each protocol module translates its own body into texts, pairs and task names, and its answer back:

* :mod:`mtbranch.serve.v2`: the Open Inference Protocol v2 (KServe, Triton REST), one output tensor per task;
* :mod:`mtbranch.serve.tei`: text-embeddings-inference's ``POST /predict`` (a body with ``inputs``);
* :mod:`mtbranch.serve.vllm`: vLLM's pooling API, ``POST /classify``.

All of them run through :func:`run_texts`: the same checks (:func:`resolve_request`), tokenizing and
:meth:`Batcher.submit <mtbranch.serve.batcher.Batcher.submit>` as ``/predict`` (the same queue, budget and
results). :func:`error_body` gives the :class:`~mtbranch.serve.http.Guard` each path's own error shape.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel

from mtbranch.errors import MtbranchError
from mtbranch.serve.schema import (
    PredictRequest,
    RequestError,
    TaskInfo,
    describe_validation_error,
    lone_surrogate_escapes_replaced,
    resolve_request,
)
from mtbranch.serve.state import Served, ServerState

Parsed = TypeVar("Parsed", bound=BaseModel)
# heads whose result is one set of scores per input (what TEI's and vLLM's classify shapes carry)
CLASSIFY_HEADS = ("classification", "regression")


@dataclass(frozen=True)
class Answer:
    """One request's results (as ``predict`` returns them), the tasks run, the version, its token count."""

    results: list[dict[str, Any]]
    tasks: list[str]
    version: str
    tokens: int


async def run_texts(state: ServerState, served: Served, texts: list[str], pairs: list[str] | None,
                    tasks: list[str] | None, raw: bool = False) -> Answer:
    """Checked by :func:`resolve_request` (limits, tasks, pairs), tokenized and run by the batcher, as ``/predict``."""
    from pydantic import ValidationError

    t0 = time.perf_counter()
    try:  # the native request model: the same field checks (lone surrogates become U+FFFD)
        body = PredictRequest.model_validate({"texts": texts, "text_pairs": pairs, "tasks": tasks, "raw": raw})
    except ValidationError as exc:
        raise RequestError(422, describe_validation_error(exc)) from None
    names = resolve_request(body, served.infos, state.settings.limits)
    assert state.batcher is not None and body.texts is not None
    job = await state.batcher.tokenize(served, body.texts, body.text_pairs, names, raw)
    results, version = await state.batcher.submit(job)
    seconds = time.perf_counter() - t0
    for name in names:
        state.metrics.task_latency.labels(name).observe(seconds)
    return Answer(results, names, version, sum(len(s.ids) for s in job.sequences))


def parse_json(model: type[Parsed], body: bytes, hint: str) -> Parsed:
    """``body`` as the pydantic ``model`` (its JSON parser; lone surrogate escapes as U+FFFD); 400/422 as
    RequestError."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(lone_surrogate_escapes_replaced(body))
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise RequestError(400, f"body is not valid JSON: {exc.errors()[0].get('msg')}", hint) from None
        raise RequestError(422, describe_validation_error(exc), hint) from None


def classify_task(state: ServerState, served: Served, name: str | None, field: str) -> TaskInfo:
    """The task a classify-shaped request answers for: ``name``, else ``--classify-task``, else the only
    single-text classification task served. ``field`` names where ``name`` came from (for the message)."""
    by_name = {t.name: t for t in served.infos}
    if name is None:
        name = state.settings.classify_task
    if name is None:
        only = [t.name for t in served.infos if t.head == "classification" and t.signature == "single"]
        if len(only) != 1:
            raise RequestError(400, f"this server serves {len(only)} single-text classification tasks "
                                    f"({', '.join(only) or 'none'}): name one",
                               f"{field}, or start the server with --classify-task NAME")
        name = only[0]
    info = by_name.get(name)
    if info is None:
        raise RequestError(404, f"{field} {name!r} is not a task of this server",
                           f"tasks served: {', '.join(by_name) or 'none'}")
    if info.head not in CLASSIFY_HEADS:
        raise RequestError(400, f"task {name!r} is a {info.head} task; this shape carries one set of scores per "
                                f"input ({' or '.join(CLASSIFY_HEADS)})", "use POST /predict for it")
    return info


def scores(result: dict[str, Any], raw: bool) -> tuple[list[str], list[float]]:
    """One classification or regression result as (labels, scores): probabilities, values, or with ``raw`` the
    head's raw outputs (logits) in label order."""
    named = result.get("scores") or result.get("values") or {}
    labels = list(named)
    return labels, [float(v) for v in (result["raw"] if raw else named.values())]


def as_request_error(exc: Exception) -> RequestError:
    """A batch's per-request failure (an :class:`MtbranchError`, e.g. a non-finite output) as a 422."""
    if isinstance(exc, RequestError):
        return exc
    assert isinstance(exc, MtbranchError)
    return RequestError(422, exc.message, exc.hint)


@dataclass(frozen=True)
class Path:
    """A path pattern a protocol answers on: its ``mtbranch_requests`` label (templated, so label values stay
    bounded), whether a POST to it runs the model (admitted under ``--max-queue`` like ``/predict``)."""

    pattern: re.Pattern[str]
    label: str
    runs_model: bool = False


def _protocols() -> list[Any]:
    from mtbranch.serve import tei, v2, vllm

    return [v2, tei, vllm]


def routers() -> list[APIRouter]:
    return [m.router for m in _protocols()]


def _match(path: str) -> tuple[Any, Path] | None:
    for module in _protocols():
        for p in module.PATHS:
            if p.pattern.fullmatch(path):
                return module, p
    return None


def error_body(path: str, err: RequestError) -> dict[str, Any]:
    """``err`` in the error shape of the protocol serving ``path`` (the native ``{"error", "hint"}`` elsewhere)."""
    found = _match(path)
    return found[0].error_body(err) if found else err.body()


def admitted(path: str) -> bool:
    """Whether a POST to ``path`` runs the model (and so counts against ``--max-queue``)."""
    found = _match(path)
    return found is not None and found[1].runs_model


def path_label(path: str) -> str | None:
    found = _match(path)
    return found[1].label if found else None
