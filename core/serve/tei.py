"""text-embeddings-inference's classify shape: ``POST /predict`` with ``inputs``, so TEI's clients work unchanged.

The native ``/predict`` body has ``texts`` (or ``words``), TEI's has ``inputs``: the two never share a field, so
both live on ``/predict`` (:func:`is_tei_body` tells them apart) and a client pointed at TEI's base URL needs no
change. That route and ``POST /`` (TEI's root route, where huggingface_hub's ``InferenceClient`` posts) answer for
the default classify task (``--classify-task``, or the only single-text classification task);
``/tei/{task}/predict`` and ``POST /tei/{task}`` for any classification or regression task: use
``http://HOST/tei/TASK`` as the base URL.

As TEI: ``inputs`` is a string, a pair ``[a, b]``, or a batch ``[[a], [a, b], ...]``; each input gets every label
``{"score", "label"}``, best first (a list for one input, a list of lists for a batch); ``raw_scores`` gives the
head's raw outputs (logits). ``truncate`` is accepted: inputs are always truncated to the branch's max length.
Errors are ``{"error", "error_type"}``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from mtbranch.errors import MtbranchError
from mtbranch.serve.protocols import Path, as_request_error, classify_task, parse_json, run_texts, scores
from mtbranch.serve.routes import VERSION_HEADER, State
from mtbranch.serve.schema import RequestError, check_content_type, lone_surrogate_escapes_replaced
from mtbranch.serve.state import ServerState

router = APIRouter(tags=["TEI"])
PATHS = [Path(re.compile(r"/tei/[^/]+(?:/predict)?"), "/tei/{task}/predict", runs_model=True),
         Path(re.compile(r"/"), "/", runs_model=True)]
HINT = 'body: {"inputs": str | [str, str] | [[str] | [str, str], ...], "raw_scores": bool}'


class TeiRequest(BaseModel):
    """TEI's ``PredictRequest`` (unknown fields ignored, as TEI's serde does)."""

    model_config = ConfigDict(extra="ignore")
    inputs: str | list[str] | list[list[str]]
    truncate: bool | None = None
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"
    raw_scores: bool = False


def is_tei_body(body: bytes) -> bool:
    """Whether a ``/predict`` body is TEI's (a JSON object with ``inputs`` and neither ``texts`` nor ``words``)."""
    if b'"inputs"' not in body:  # cheap: the native body never needs the full check
        return False
    from pydantic_core import from_json

    try:
        doc = from_json(lone_surrogate_escapes_replaced(body))  # as parse_json reads it
    except ValueError:
        return False
    return isinstance(doc, dict) and "inputs" in doc and "texts" not in doc and "words" not in doc


def error_body(err: RequestError) -> dict[str, Any]:
    kind = ("Overloaded" if err.status == 503 else "Empty" if err.status == 400 and "empty" in err.message
            else "Backend" if err.status >= 500 else "Validation")
    return {"error": f"{err.message} ({err.hint})" if err.hint else err.message, "error_type": kind}


@router.post("/", summary="TEI's root route: its /predict for the default classify task.")
async def predict_root(request: Request, state: State) -> JSONResponse:
    return await predict(request, state, await request.body())


@router.post("/tei/{task}/predict", summary="TEI's /predict for one task (base URL http://HOST/tei/TASK).")
@router.post("/tei/{task}", summary="TEI's root route: its /predict for one task.")
async def predict_task(task: str, request: Request, state: State) -> JSONResponse:
    return await predict(request, state, await request.body(), task)


async def predict(request: Request, state: ServerState, body: bytes, task: str | None = None) -> JSONResponse:
    """Answer a TEI body (``/predict`` calls it for a body with ``inputs``)."""
    try:
        check_content_type(request.headers.get("content-type"))
        served = state.current()
        info = classify_task(state, served, task, "the task in /tei/{task}/predict")
        req: TeiRequest = parse_json(TeiRequest, body, HINT)
        if req.truncation_direction.lower() == "left":
            raise RequestError(422, "truncation_direction 'left' is not supported", "truncate on the right")
        single, inputs = _inputs(req.inputs)
        pair = info.signature == "pair"
        if any((len(i) == 2) != pair for i in inputs):
            raise RequestError(422, f"task {info.name!r} takes {'a pair' if pair else 'one text'} per input",
                               "send [text, pair] per input" if pair else "send one string per input")
        answer = await run_texts(state, served, [i[0] for i in inputs], [i[1] for i in inputs] if pair else None,
                                 [info.name], raw=req.raw_scores)
    except (RequestError, MtbranchError) as exc:
        err = as_request_error(exc)
        return JSONResponse(error_body(err), status_code=err.status, headers=err.headers())
    out = [_predictions(r[info.name], req.raw_scores) for r in answer.results]
    return JSONResponse(out[0] if single else out, headers={VERSION_HEADER: answer.version})


def _inputs(inputs: str | list[str] | list[list[str]]) -> tuple[bool, list[list[str]]]:
    """(one input?, the inputs as [text] or [text, pair]), as TEI reads ``inputs``."""
    if isinstance(inputs, str):
        return True, [[inputs]]
    if not inputs:
        raise RequestError(400, "inputs is empty", "send at least one input")
    if all(isinstance(i, str) for i in inputs):  # one input: [text] or [text, pair]
        batch = [inputs]
        single = True
    else:
        batch, single = inputs, False  # type: ignore[assignment]
    for k, item in enumerate(batch):
        if len(item) not in (1, 2):
            raise RequestError(422, f"inputs[{k}] has {len(item)} strings", "an input is [text] or [text, pair]")
    return single, [list(i) for i in batch]  # type: ignore[arg-type]


def _predictions(result: dict[str, Any], raw: bool) -> list[dict[str, Any]]:
    labels, values = scores(result, raw)
    ranked = sorted(zip(labels, values, strict=True), key=lambda lv: lv[1], reverse=True)
    return [{"score": v, "label": label} for label, v in ranked]
