"""The request/response schema shared by ``mtbranch serve`` and the Ray Serve deployment.

Pydantic only (no FastAPI, no torch), so a client can import it too. :func:`resolve_request` checks one request
against the limits and the model's task set *before* it joins a batch, so a bad request never fails the
batch it would have shared with good ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtbranch.composition.buckets import MAX_PADDING
from mtbranch.io.files import first_duplicate_key

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

_SURROGATES = re.compile("[\ud800-\udfff]")


class PredictRequest(BaseModel):
    """``POST /predict`` body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: list[str] | None = Field(default=None, description="Input texts (one result per text).")
    words: list[list[str]] | None = Field(default=None, description=(
        "Instead of texts: inputs already split into words (one list per input); token tasks then also return "
        "'tags', one per word."))
    tasks: list[str] | None = Field(default=None, description=(
        "Tasks to run (the trunk runs only as deep as they need). Default: every task that fits the input: "
        "single-text tasks, plus pair tasks when text_pairs is given."))
    owners: list[str] | None = Field(default=None, description=(
        "Instead of (or with) tasks: every task these owners ship (the manifests' owner field); pair tasks only "
        "when text_pairs is given."))
    tags: list[str] | None = Field(default=None, description=(
        "Instead of (or with) tasks: every task whose manifest carries one of these tags (e.g. 'safety'); pair "
        "tasks only when text_pairs is given."))
    text_pairs: list[str] | None = Field(default=None, description="Second text per input, for pair tasks.")
    raw: bool = Field(default=False, description="Also return each head's raw outputs (logits / values).")

    @model_validator(mode="after")
    def _texts_or_words(self) -> PredictRequest:
        """``words`` become texts whose whitespace words are exactly them (the decoder's default word rule)."""
        if (self.texts is None) == (self.words is None):
            raise ValueError("send texts or words (one of the two)")
        if self.words is not None:
            for i, ws in enumerate(self.words):
                for k, w in enumerate(ws):
                    if not w or any(c.isspace() for c in w):
                        raise ValueError(f"words[{i}][{k}] = {w!r} is not a word (non-empty, no whitespace)")
            self.texts = [" ".join(ws) for ws in self.words]
        return self

    @property
    def tagged(self) -> bool:
        """Pre-split input: token tasks return one tag per word."""
        return self.words is not None

    @field_validator("texts", "text_pairs")
    @classmethod
    def _no_lone_surrogates(cls, v: list[str] | None) -> list[str] | None:
        """JSON may escape lone surrogates (``"\\ud800"``), which have no UTF-8 form: they become U+FFFD,
        one code point for one, so offsets still index the text as sent and the response stays valid UTF-8."""
        if v is None or not any(_SURROGATES.search(t) for t in v):
            return v
        return [_SURROGATES.sub("\ufffd", t) for t in v]


class PredictResponse(BaseModel):
    results: list[dict[str, dict[str, Any]]] = Field(description="One object per text: task name -> result.")
    tasks: list[str] = Field(description="The tasks that were run.")


class ErrorBody(BaseModel):
    error: str
    hint: str | None = None


class TaskInfo(BaseModel):
    name: str
    version: str
    signature: str = Field(description="'single' (one text) or 'pair' (needs text_pairs).")
    head: str
    attach_depth: int
    owner: str | None = Field(default=None, description="The team that ships it (the manifest's owner).")
    tags: list[str] = Field(default_factory=list, description="The manifest's tags.")


@dataclass(frozen=True)
class Limits:
    """Per-request size limits (the same for HTTP and Ray)."""

    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_chars: int = 10_000


@dataclass(frozen=True)
class ServeSettings:
    """Every serving default, in one place: ``mtbranch serve`` (its option defaults), :func:`create_app` and the
    Ray deployment (``build_app``) read them here. ``max_batch_size`` means the same everywhere: the most
    sequences in one trunk pass (a text run by single-text and pair tasks counts twice). Under Ray,
    ``@serve.batch`` gathers up to that many *requests* (it cannot count texts), and their sequences then run in
    passes of at most ``max_batch_size``; ``mtbranch serve`` stops gathering once the sequences would exceed it."""

    max_batch_size: int = 32  # sequences per trunk pass (a text run by single and pair tasks counts twice)
    max_batch_tokens: int | None = None  # padded tokens per trunk pass (sequences x the longest); None: no limit
    max_padding: float | None = MAX_PADDING  # a batch is cut into passes each at most this much padding
    max_batch_wait_ms: float = 5.0
    max_queue: int = 128  # /predict requests admitted at once; the next gets 503 + Retry-After
    request_timeout_s: float = 30.0  # admitted but not answered by then: 503 + Retry-After
    read_timeout_s: float = 10.0  # request head (uvicorn) and body (this app) must arrive within this
    keep_alive_s: float = 5.0  # idle keep-alive connections are closed after this
    grace_s: float = 10.0  # SIGTERM: requests in flight get this long, then 503
    drain_delay_s: float = 0.0  # SIGTERM: readiness is 503 this long before the listener closes
    admin_token: str | None = None  # enables POST /admin/reload (Authorization: Bearer TOKEN)
    reload_timeout_s: float = 600.0  # POST /admin/reload answers 409 when loading takes longer (the old model serves)
    model_name: str = "mtbranch"  # the model's name under the v2 protocol (/v2/models/NAME) and vLLM's `model`
    classify_task: str | None = None  # the task TEI's /predict and vLLM's /classify answer for by default
    quotas: dict[str, float] = dataclasses.field(default_factory=dict)  # owner ('*': any other) -> texts/s
    # seconds of its quota an owner's bucket holds (at least one text): what an idle owner may send at once
    quota_burst_s: float = 2.0
    limits: Limits = dataclasses.field(default_factory=Limits)

    def __post_init__(self) -> None:
        # the CLI's option types check these too; Python callers (create_app, Ray's build_app) land here
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                from mtbranch.errors import MtbranchError

                raise MtbranchError(f"ServeSettings.{f.name} is {value}: it must be a finite number >= 0",
                                    hint="e.g. grace_s=10.0 (mtbranch.serve.schema.ServeSettings has the defaults)")


class RequestError(Exception):
    """A request the client must fix: carries the HTTP status and a message naming the field."""

    def __init__(self, status: int, message: str, hint: str | None = None, *,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint
        self.retry_after = retry_after  # seconds, sent as Retry-After (503: busy, draining, timed out)

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}

    def body(self) -> dict[str, Any]:
        return ErrorBody(error=self.message, hint=self.hint).model_dump(exclude_none=True)


def describe_validation_error(exc: ValidationError | Sequence[Any]) -> str:
    """``texts[1]: Input should be a valid string; raw: ...`` from pydantic's (or FastAPI's) error list."""
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    parts = []
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        where = ""
        for x in loc:
            where += f"[{x}]" if x.isdigit() else (f".{x}" if where else x)
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


JSON_HINT = 'send {"texts": ["..."]} as UTF-8 JSON with Content-Type: application/json'


def check_content_type(value: str | None) -> None:
    """415 unless the body is declared JSON (``application/json``, ``application/*+json``; a missing header is JSON)."""
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestError(415, f"Content-Type {media or '(empty)'!r} is not JSON", JSON_HINT)
    charset = [p.split("=", 1)[1].strip().strip('"').lower() for p in value.split(";")[1:]
               if p.strip().lower().startswith("charset=")]
    if charset and charset[0] not in ("utf-8", "utf8"):
        raise RequestError(415, f"charset {charset[0]!r} is not supported", JSON_HINT)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def lone_surrogate_escapes_replaced(body: bytes | str) -> bytes | str:
    """JSON may spell a lone surrogate (``"\\ud800"``: valid JSON, no UTF-8 form) that pydantic's parser refuses:
    each becomes ``\\ufffd``, so such a text gets an answer like any other (escaped pairs stay as they are)."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if not _SURROGATE_ESCAPE.search(raw):
        return body
    escapes = list(_ESCAPE.finditer(raw))  # left to right, so "\\\\ud800" (an escaped backslash) is not one
    out, last = [], 0
    for k, m in enumerate(escapes):
        code = int(m.group(1), 16) if m.group(1) else -1
        if not 0xD800 <= code <= 0xDFFF:
            continue
        prev = escapes[k - 1] if k else None
        nxt = escapes[k + 1] if k + 1 < len(escapes) else None
        paired = (code <= 0xDBFF and nxt is not None and nxt.start() == m.end() and nxt.group(1)
                  and 0xDC00 <= int(nxt.group(1), 16) <= 0xDFFF) or (
                  code >= 0xDC00 and prev is not None and prev.end() == m.start() and prev.group(1)
                  and 0xD800 <= int(prev.group(1), 16) <= 0xDBFF)
        if not paired:
            out += [raw[last:m.start()], b"\\ufffd"]
            last = m.end()
    fixed = b"".join(out) + raw[last:]
    return fixed if isinstance(body, bytes) else fixed.decode("utf-8", "surrogatepass")


def parse_request(body: bytes | str | dict[str, Any], limits: Limits) -> PredictRequest:
    """Bytes/str (JSON) or an already-decoded dict -> a typed request; 400/413/422 as :class:`RequestError`.

    Bytes are parsed by pydantic's own JSON parser (no ``json.loads``): invalid UTF-8, nesting deeper than its
    recursion limit and numbers out of range (huge integers) are a 400 naming the problem and its position.
    """
    if isinstance(body, bytes | str):
        if len(body) > limits.max_body_bytes:
            raise RequestError(413, f"request body is {len(body)} bytes; the limit is {limits.max_body_bytes}",
                               "send fewer or shorter texts per request")
        try:
            req = PredictRequest.model_validate_json(lone_surrogate_escapes_replaced(body))
        except ValidationError as exc:
            if any(e.get("type") == "json_invalid" for e in exc.errors()):
                raise RequestError(400, f"body is not valid JSON: {exc.errors()[0].get('msg')}", JSON_HINT) from None
            raise RequestError(422, describe_validation_error(exc), REQUEST_HINT) from None
        dup = first_duplicate_key(body)  # pydantic keeps the last of two values: refuse rather than pick one
        if dup is not None:
            raise RequestError(400, f"body is not valid JSON for this API: the key {dup!r} appears twice in one "
                                    "object", "send each key once")
        return req
    try:
        return PredictRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestError(422, describe_validation_error(exc), REQUEST_HINT) from None


REQUEST_HINT = ('body: {"texts": [str, ...] (or "words": [[str, ...], ...]), "tasks": [str, ...] | null, '
                '"owners": [str, ...] | null, "tags": [str, ...] | null, "text_pairs": [str, ...] | null, "raw": bool}')


def resolve_request(req: PredictRequest, tasks: Sequence[TaskInfo], limits: Limits) -> list[str]:
    """Check sizes, tasks and pairs; returns the task names to run."""
    assert req.texts is not None  # words were joined into texts when the request was parsed
    if not req.texts:
        raise RequestError(422, "texts is empty", "send at least one text")
    if len(req.texts) > limits.max_texts:
        raise RequestError(413, f"{len(req.texts)} texts in one request; the limit is {limits.max_texts}",
                           "split the request")
    for field, items in (("texts", req.texts), ("text_pairs", req.text_pairs or [])):
        for i, t in enumerate(items):
            if len(t) > limits.max_chars:
                raise RequestError(413, f"{field}[{i}] has {len(t)} characters; the limit is {limits.max_chars}",
                                   "shorten the text (inputs are truncated to the tokenizer's max_length anyway)")
    if req.text_pairs is not None and len(req.text_pairs) != len(req.texts):
        raise RequestError(422, f"{len(req.texts)} texts but {len(req.text_pairs)} text_pairs",
                           "give one pair text per input text")
    if req.owners is not None or req.tags is not None:
        return _owned_tasks(req, tasks)
    if req.tasks is None:
        names = [t.name for t in tasks if t.signature == "single" or req.text_pairs is not None]
        if not names:
            raise RequestError(422, "every task of this model takes a text pair, but text_pairs is missing",
                               "send text_pairs")
        return names
    return _named_tasks(req, {t.name: t for t in tasks})


def _named_tasks(req: PredictRequest, by_name: dict[str, TaskInfo]) -> list[str]:
    """The tasks the request names: each served, each pair task with its text_pairs."""
    assert req.tasks is not None
    if not req.tasks:
        raise RequestError(422, "tasks is an empty list", "omit tasks to run every task, or name some")
    unknown = [t for t in req.tasks if t not in by_name]
    if unknown:
        raise RequestError(422, f"unknown task(s): {', '.join(map(repr, unknown))}",
                           f"tasks served: {', '.join(by_name) or 'none'}")
    names = list(dict.fromkeys(req.tasks))
    need_pair = [n for n in names if by_name[n].signature == "pair"]
    if need_pair and req.text_pairs is None:
        raise RequestError(422, f"task(s) {', '.join(need_pair)} take a text pair, but text_pairs is missing",
                           "send text_pairs (one per text), or leave those tasks out")
    return names


def _owned_tasks(req: PredictRequest, tasks: Sequence[TaskInfo]) -> list[str]:
    """``owners`` / ``tags`` (with ``tasks``, if any): the named tasks plus every task the owners ship or the tags
    mark that fits the input."""
    _check_known("owner", req.owners, {t.owner for t in tasks if t.owner})
    _check_known("tag", req.tags, {g for t in tasks for g in t.tags})
    owners, tags = set(req.owners or ()), set(req.tags or ())
    named = _named_tasks(req, {t.name: t for t in tasks}) if req.tasks is not None else []
    chosen = [t.name for t in tasks if (t.owner in owners or tags & set(t.tags))
              and (t.signature == "single" or req.text_pairs)]
    if not named and not chosen:
        raise RequestError(422, f"{', '.join([*(req.owners or ()), *(req.tags or ())])}: only pair tasks, but "
                                "text_pairs is missing", "send text_pairs")
    return list(dict.fromkeys([*named, *chosen]))


def _check_known(what: str, asked: list[str] | None, served: set[str]) -> None:
    if asked is None:
        return
    unknown = [a for a in asked if a not in served]
    if not asked or unknown:
        raise RequestError(422, f"unknown {what}(s): {', '.join(map(repr, unknown))}" if unknown else
                           f"{what}s is an empty list", f"{what}s served: {', '.join(sorted(served)) or 'none'}")


def task_infos(model: ComposedModel) -> list[TaskInfo]:
    return [TaskInfo(name=b.name, version=b.manifest.version, signature=b.manifest.tokenizer.input_signature,
                     head=b.manifest.head.type, attach_depth=b.manifest.attach_depth, owner=b.manifest.owner,
                     tags=list(b.manifest.tags))
            for b in model.branches]


def warm_up(model: ComposedModel) -> None:
    """One call per input signature, so the first real request does not pay tokenizer/kernel set-up."""
    infos = task_infos(model)
    single = [t.name for t in infos if t.signature == "single"]
    pair = [t.name for t in infos if t.signature == "pair"]
    for n in (1, 4):
        if single:
            model.predict(["warm-up text"] * n, tasks=single)
        if pair:
            model.predict(["warm-up text"] * n, text_pairs=["a second text"] * n, tasks=pair)
