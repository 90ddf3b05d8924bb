"""The Open Inference Protocol v2 (KServe's V2, Triton's HTTP/REST API), so their clients and gateways work unchanged.

The composed model is one v2 model (``--model-name``, default ``mtbranch``) with a BYTES input ``text`` (and
``text_pair`` for pair tasks) and one BYTES output per task, named after it: element *i* is the JSON of text *i*'s
result, exactly as ``predict`` returns it (every head type fits one tensor: token tasks' entities vary in number).
Requested outputs choose the tasks (the trunk runs only as deep as they need); none requested: every task that fits
the inputs, as ``/predict``. Tensors travel as JSON or with the binary tensor data extension (tritonclient's
default: ``Inference-Header-Content-Length``, each BYTES element a 4-byte little-endian length and its bytes).
Errors are ``{"error": "..."}``, the protocol's shape.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mtbranch.errors import MtbranchError
from mtbranch.serve.protocols import Path, as_request_error, parse_json, run_texts
from mtbranch.serve.routes import VERSION_HEADER, State
from mtbranch.serve.schema import RequestError
from mtbranch.serve.state import Served, ServerState

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
_MODEL = r"/v2/models/[^/]+(?:/versions/[^/]+)?"
PATHS = [Path(re.compile(_MODEL + "/infer"), "/v2/models/{name}/infer", runs_model=True),
         Path(re.compile(_MODEL + "/ready"), "/v2/models/{name}/ready"),
         Path(re.compile(_MODEL), "/v2/models/{name}"),
         Path(re.compile(r"/v2(?:/health/live|/health/ready)?"), "/v2")]
TEXT, PAIR = "text", "text_pair"
HEADER_LENGTH = "inference-header-content-length"
HINT = 'body: {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [N], "data": [str, ...]}], "outputs": ' \
       '[{"name": TASK}, ...]} (GET /v2/models/NAME lists them)'


class Tensor(BaseModel):
    """An input tensor of an inference request (``data`` absent when its bytes follow the JSON header)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[Tensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


def error_body(err: RequestError) -> dict[str, Any]:
    return {"error": f"{err.message} ({err.hint})" if err.hint else err.message}


def _error(err: RequestError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers())


@router.get("", summary="v2 server metadata.")
async def server_metadata() -> dict[str, Any]:
    from mtbranch import __version__

    return {"name": "mtbranch", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="v2 liveness: 200 while the process answers.")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="v2 readiness: 200 once loaded and warmed up, 503 before and when draining.")
async def ready(state: State) -> JSONResponse:
    try:
        state.current()
    except RequestError as err:
        return _error(err)
    if state.draining:
        return _error(RequestError(503, "shutting down", "send traffic to another replica"))
    return JSONResponse({"ready": True})


@router.get("/models/{name}", summary="v2 model metadata: the inputs and one BYTES output per task.")
@router.get("/models/{name}/versions/{version}", summary="v2 model metadata of one version.")
async def model_metadata(name: str, state: State, version: str | None = None) -> JSONResponse:
    try:
        served = _model(state, name, version)
    except RequestError as err:
        return _error(err)
    inputs = [_meta(TEXT)] + ([_meta(PAIR)] if any(t.signature == "pair" for t in served.infos) else [])
    return JSONResponse({"name": name, "versions": [served.version], "platform": "mtbranch",
                         "inputs": inputs, "outputs": [_meta(t.name) for t in served.infos]})


@router.get("/models/{name}/ready", summary="v2 model readiness.")
@router.get("/models/{name}/versions/{version}/ready", summary="v2 model readiness of one version.")
async def model_ready(name: str, state: State, version: str | None = None) -> JSONResponse:
    try:
        _model(state, name, version)
    except RequestError as err:
        return _error(err)
    return JSONResponse({"name": name, "ready": True})


@router.post("/models/{name}/infer", summary="v2 inference: BYTES text in, one BYTES (JSON) output per task.")
@router.post("/models/{name}/versions/{version}/infer", summary="v2 inference on one version.")
async def infer(name: str, request: Request, state: State, version: str | None = None) -> Response:
    try:
        served = _model(state, name, version)
        header, binary = _split(await request.body(), request.headers.get(HEADER_LENGTH))
        req: InferenceRequest = parse_json(InferenceRequest, header, HINT)
        texts, pairs = _inputs(req, binary)
        tasks = _tasks(req, served, pairs is not None)
        params = req.parameters or {}
        answer = await run_texts(state, served, texts, pairs, tasks, raw=params.get("raw") is True)
    except (RequestError, MtbranchError) as exc:
        return _error(as_request_error(exc))
    binary_out = _binary_outputs(req, params)
    outputs, chunks = [], []
    for task in answer.tasks:
        tensor, chunk = _output(task, [json.dumps(r[task]) for r in answer.results], binary_out[task])
        outputs.append(tensor)
        chunks.append(chunk)
    body: dict[str, Any] = {"model_name": name, "model_version": answer.version, "outputs": outputs}
    if req.id is not None:
        body["id"] = req.id
    headers = {VERSION_HEADER: answer.version}
    if not any(chunks):
        return JSONResponse(body, headers=headers)
    head = json.dumps(body).encode()
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={**headers, HEADER_LENGTH: str(len(head))})


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [-1]}


def _model(state: ServerState, name: str, version: str | None) -> Served:
    served = state.current()
    model = state.settings.model_name
    if name != model:
        raise RequestError(404, f"unknown model {name!r}", f"this server serves the model {model!r}")
    if version not in (None, "", served.version):
        raise RequestError(404, f"model {name!r} version {version!r} is not served",
                           f"the version served is {served.version} (GET /v2/models/{model})")
    return served


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data after it (binary tensor data extension)."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise RequestError(400, f"{HEADER_LENGTH} {header_length!r} is not a length within the body "
                                f"({len(body)} bytes)", "send the length of the JSON part of the body")
    n = int(header_length)
    return body[:n], body[n:]


def _inputs(req: InferenceRequest, binary: bytes) -> tuple[list[str], list[str] | None]:
    """The texts (and pair texts) of inputs ``text`` / ``text_pair``; binary data is consumed in input order."""
    found: dict[str, list[str]] = {}
    offset = 0
    for t in req.inputs:
        if t.name not in (TEXT, PAIR):
            raise RequestError(400, f"unknown input {t.name!r}", f"inputs: {TEXT} (BYTES), {PAIR} (BYTES, pair tasks)")
        if t.datatype != "BYTES":
            raise RequestError(400, f"input {t.name!r} has datatype {t.datatype}", "send texts as BYTES")
        size = (t.parameters or {}).get("binary_data_size")
        if size is not None:
            values, offset = _unpack(binary, offset, size, t.name), offset + size
        else:
            values = _flatten(t.data, t.name)
        if len(values) != math.prod(t.shape):
            raise RequestError(400, f"input {t.name!r} has {len(values)} elements but shape {t.shape}",
                               "make shape match the data, e.g. [N] for N texts")
        found[t.name] = values
    if TEXT not in found:
        raise RequestError(400, f"input {TEXT!r} is missing", HINT)
    return found[TEXT], found.get(PAIR)


def _unpack(binary: bytes, offset: int, size: Any, name: str) -> list[str]:
    """BYTES elements in the binary tensor data format (4-byte little-endian length, then the bytes), as text."""
    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise RequestError(400, f"input {name!r}: binary_data_size {size!r} runs past the body's binary part "
                                f"({len(binary) - offset} bytes left)", "send the size of the input's bytes")
    chunk, values, k = binary[offset:offset + size], [], 0
    while k < len(chunk):
        if k + 4 > len(chunk):
            raise RequestError(400, f"input {name!r}: a truncated BYTES element length", "check the encoding")
        (n,) = struct.unpack_from("<I", chunk, k)
        if k + 4 + n > len(chunk):
            raise RequestError(400, f"input {name!r}: a BYTES element runs past its tensor", "check the encoding")
        try:
            values.append(chunk[k + 4:k + 4 + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(400, f"input {name!r}: element {len(values)} is not UTF-8 text",
                               "encode the texts as UTF-8") from None
        k += 4 + n
    return values


def _flatten(data: Any, name: str) -> list[str]:
    """JSON tensor data, flat or nested row-major, as a list of texts."""
    if isinstance(data, str):
        return [data]
    if not isinstance(data, list):
        raise RequestError(400, f"input {name!r} has no data", "send data (JSON) or binary_data_size (binary)")
    out: list[str] = []
    for item in data:
        if isinstance(item, list):
            out += _flatten(item, name)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise RequestError(400, f"input {name!r} holds a {type(item).__name__}, not a string", "send texts")
    return out


def _tasks(req: InferenceRequest, served: Served, with_pairs: bool) -> list[str] | None:
    if req.outputs is None:
        return None
    signature = {t.name: t.signature for t in served.infos}
    unknown = [o.name for o in req.outputs if o.name not in signature]
    if unknown:
        raise RequestError(400, f"unknown output(s): {', '.join(map(repr, unknown))}",
                           f"outputs (one per task): {', '.join(signature)}")
    if not req.outputs:
        raise RequestError(400, "outputs is an empty list", "omit outputs for every task, or name some")
    need_pair = [o.name for o in req.outputs if signature[o.name] == "pair"]
    if need_pair and not with_pairs:
        raise RequestError(400, f"output(s) {', '.join(need_pair)} read a text pair, but input {PAIR!r} is missing",
                           f"send {PAIR} (one per text), or leave those outputs out")
    return [o.name for o in req.outputs]


def _binary_outputs(req: InferenceRequest, params: dict[str, Any]) -> dict[str, bool]:
    """Per task, whether its output goes as binary data: the output's own ``binary_data``, else the request's
    ``binary_data_output`` (tritonclient sets it when it names no outputs)."""
    default = params.get("binary_data_output") is True
    named = {o.name: (o.parameters or {}).get("binary_data", default) is True for o in req.outputs or []}
    return named or defaultdict(lambda: default)


def _output(name: str, values: list[str], binary: bool) -> tuple[dict[str, Any], bytes]:
    tensor: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [len(values)]}
    if not binary:
        return {**tensor, "data": values}, b""
    raw = b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))
    return {**tensor, "parameters": {"binary_data_size": len(raw)}}, raw
