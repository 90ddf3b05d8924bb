"""vLLM's pooling API classify shape: ``POST /classify``, so clients of vLLM's classify endpoint work unchanged.

The request's ``model`` chooses the task: a task name answers for that task; the server's ``--model-name`` (or no
``model``) for the default classify task (``--classify-task``, or the only single-text classification task).
``input`` is a string or a list of strings. Each input gets ``{"index", "label", "probs", "num_classes"}`` (``probs``
in label order; ``use_activation: false`` gives the raw logits) and ``usage`` counts the tokens run. Errors are
vLLM's ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from mtbranch.errors import MtbranchError
from mtbranch.serve.protocols import Path, as_request_error, classify_task, parse_json, run_texts, scores
from mtbranch.serve.routes import VERSION_HEADER, State
from mtbranch.serve.schema import RequestError, check_content_type

router = APIRouter(tags=["vLLM"])
PATHS = [Path(re.compile(r"/classify"), "/classify", runs_model=True)]
HINT = 'body: {"model": TASK | null, "input": str | [str, ...]}'
_TYPES = {400: "BadRequestError", 404: "NotFoundError", 408: "RequestTimeoutError", 413: "BadRequestError",
          415: "BadRequestError", 422: "BadRequestError", 503: "ServiceUnavailableError"}


class ClassificationRequest(BaseModel):
    """vLLM's completion-style ``ClassificationRequest`` (the fields that change the answer; the others, such as
    ``user``, ``priority`` or ``truncate_prompt_tokens``, are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    input: str | list[str] | None = None
    messages: Any = None
    use_activation: bool | None = None
    activation: bool | None = None  # deprecated spellings of use_activation, as vLLM still reads them
    softmax: bool | None = None


def error_body(err: RequestError) -> dict[str, Any]:
    message = f"{err.message} ({err.hint})" if err.hint else err.message
    return {"error": {"message": message, "type": _TYPES.get(err.status, "InternalServerError"), "param": None,
                      "code": err.status}}


@router.post("/classify", summary="vLLM's classify API: `model` names the task.")
async def classify(request: Request, state: State) -> JSONResponse:
    try:
        check_content_type(request.headers.get("content-type"))
        served = state.current()
        req: ClassificationRequest = parse_json(ClassificationRequest, await request.body(), HINT)
        if req.messages is not None or req.input is None:
            raise RequestError(400, "send input (a string or a list of strings); chat messages are not supported",
                               HINT)
        texts = [req.input] if isinstance(req.input, str) else req.input
        task = None if req.model in (None, state.settings.model_name) else req.model
        info = classify_task(state, served, task, "model")
        activation = next((v for v in (req.use_activation, req.activation, req.softmax) if v is not None), True)
        answer = await run_texts(state, served, texts, None, [info.name], raw=not activation)
    except (RequestError, MtbranchError) as exc:
        err = as_request_error(exc)
        return JSONResponse(error_body(err), status_code=err.status, headers=err.headers())
    data = []
    for i, result in enumerate(answer.results):
        labels, probs = scores(result[info.name], raw=not activation)
        best = max(range(len(probs)), key=probs.__getitem__)
        data.append({"index": i, "label": labels[best], "probs": probs, "num_classes": len(probs)})
    return JSONResponse({"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                         "model": req.model or state.settings.model_name, "data": data,
                         "usage": {"prompt_tokens": answer.tokens, "total_tokens": answer.tokens,
                                   "completion_tokens": 0, "prompt_tokens_details": None}},
                        headers={VERSION_HEADER: answer.version})
