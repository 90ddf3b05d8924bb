"""Property-based tests for hostile input (issue 14): any text through ``predict`` in Python, the CLI's output and
HTTP gives a result or a coded error; any bytes or rows through every data reader give rows or a DataError naming
the file (and the line, for a bad row). Never another exception.

The composed model is built once per module; hypothesis runs 500 examples per property.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mtbranch
from mtbranch.cli.main import cli
from mtbranch.cli.output import display_text
from mtbranch.sdk.data import ConllSpec, DataError, TableSpec, read_conll, read_seq_files, read_table
from mtbranch.sdk.inputs import InputReader

from helpers import make_serving_artifact

SETTINGS = settings(max_examples=500, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

def _has_surrogate(texts: list[str]) -> bool:
    return any("\ud800" <= c <= "\udfff" for t in texts for c in t)


# -- texts: surrogates, controls, markup brackets, RTL, emoji, NUL, line separators --------------------------------
FRAGMENTS = ["[red]", "[/red]", "[/]", "[/x]", "[bold]", "[", "]", "\\", ":smile:", "[link=x]", "\x00", "\x1b[31m",
             "\t", "\n", "\r", "\u2028", "\u0085", "\u202e", "\u200f", "\u200b", "\ufeff", "\ud800", "\udfff",
             "\udcff", "\ud83d\ude00", "😀", "👩‍👩‍👧", "שלום", "مرحبا", "é", "e\u0301", "\uffff", "john", "paris",
             "the film", " ", "-x", "--json", "'", '"']
CHUNK = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.characters(),  # any code point but surrogates
    st.characters(max_codepoint=0x9F, categories=["Cc"]),
    st.text(max_size=8),
)
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
# half of the texts may hold lone surrogates (from FRAGMENTS or SURROGATE), half hold none
TEXT = st.one_of(st.lists(CHUNK, max_size=12).map("".join).filter(lambda t: not _has_surrogate([t])),
                 st.lists(CHUNK | SURROGATE, max_size=12).map("".join))
TEXTS = st.lists(TEXT, min_size=1, max_size=4)


@pytest.fixture(scope="module")
def composed(tiny_bert_dir: Path) -> Iterator[tuple[Path, Any]]:
    with tempfile.TemporaryDirectory(prefix="mtbranch-hostile-") as tmp:
        art = make_serving_artifact(tiny_bert_dir, Path(tmp))
        yield art, mtbranch.load(art)


def _check_results(texts: list[str], results: list[dict[str, Any]], tasks: list[str]) -> None:
    assert len(results) == len(texts)
    for text, res in zip(texts, results, strict=True):
        assert list(res) == tasks
        for e in res.get("entities", {}).get("entities", []):  # offsets index the caller's own string
            assert e["text"] == text[e["start"]:e["end"]]


@SETTINGS
@given(texts=TEXTS, with_pairs=st.booleans(), pairs=TEXTS)
def test_python_predict_answers_any_text(composed: tuple[Path, Any], texts: list[str], with_pairs: bool,
                                        pairs: list[str]) -> None:
    _, model = composed
    pairs = (pairs * len(texts))[:len(texts)]
    tasks = ["sentiment", "entities"] + (["similarity"] if with_pairs else [])
    results = model.predict(texts, tasks=tasks, text_pairs=pairs if with_pairs else None)
    _check_results(texts, results, tasks)
    event(f"lone surrogate: {_has_surrogate(texts)}")


@SETTINGS
@given(texts=TEXTS, as_json=st.booleans())
def test_cli_output_of_any_text(composed: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, texts: list[str],
                                as_json: bool) -> None:
    """``mtbranch predict ART -- TEXT...``: the echo is the text (controls escaped), or exit 1 for text that was
    not UTF-8 in argv (lone surrogates, as Python decodes such bytes)."""
    art, model = composed
    import mtbranch.composition.artifact as artifact

    monkeypatch.setattr(artifact, "load", lambda *_a, **_k: model)  # the CLI path without re-loading each time
    args = ["predict", str(art), "--task", "sentiment", "--task", "entities", *(["--json"] if as_json else []),
            "--", *texts]
    r = CliRunner().invoke(cli, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and "internal error" not in r.output
    if _has_surrogate(texts):
        assert r.exit_code == 1 and "is not valid UTF-8 text" in r.output
        event("refused: not UTF-8")
        return
    assert r.exit_code == 0, r.output
    if as_json:
        _check_results(texts, json.loads(r.output), ["sentiment", "entities"])
    else:
        lines = r.output.split("\n")
        for t in texts:
            assert display_text(t) in lines, (t, r.output)
    event("answered")


@pytest.fixture(scope="module")
def client(composed: tuple[Path, Any]) -> Iterator[Any]:
    import time

    from fastapi.testclient import TestClient

    from mtbranch.serve.app import ServeSettings, create_app

    with TestClient(create_app(composed[1], settings=ServeSettings(max_batch_wait_ms=0.0))) as c:
        for _ in range(600):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield c


@SETTINGS
@given(texts=TEXTS, pairs=st.none() | TEXTS, raw_escape=st.booleans())
def test_http_answers_any_text(client: Any, texts: list[str], pairs: list[str] | None, raw_escape: bool) -> None:
    """JSON bodies (lone surrogates as ``\\udXXX`` escapes, everything else as is or escaped): 200 with a result per
    text, or a 4xx ``{"error", "hint"}`` body; never 500."""
    body: dict[str, Any] = {"texts": texts}
    if pairs is not None:
        body["text_pairs"] = (pairs * len(texts))[:len(texts)]
    raw = json.dumps(body, ensure_ascii=raw_escape)
    data = raw.encode("utf-8", "surrogatepass" if not raw_escape else "strict")
    r = client.post("/predict", content=data, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        results = r.json()["results"]
        assert len(results) == len(texts)
        event("200")
    else:
        assert "error" in r.json()
        event(f"{r.status_code}")  # a lone surrogate sent as raw UTF-8 bytes is invalid UTF-8: 400


# -- data files ---------------------------------------------------------------------------------------------------
CELL = st.one_of(
    st.sampled_from(["pos", "neg", "0.5", "nan", "inf", "-inf", "1e999", "1" * 400, "", " ", "O", "B-PER", "I-LOC",
                     "B-", "\"", "\"quoted, cell\"", "caf\xe9", "\u2028", "\x00", "-DOCSTART-", "true"]),
    st.text(max_size=6),
)
ROWS = st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=6)
SEPARATOR = st.sampled_from(["\t", ",", " "])
NEWLINE = st.sampled_from(["\n", "\r\n", "\r", "\u2028"])
ENCODING = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le"])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
    | st.floats() | st.text(max_size=6) | st.sampled_from(["\ud800", "pos", "B-PER"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["t", "l", "p"]), inner, max_size=3),
    max_leaves=8,
)
JSON_LINE = st.one_of(
    st.dictionaries(st.sampled_from(["t", "p", "l", "x"]), JSON_VALUE, max_size=4).map(json.dumps),
    st.integers(1, 3000).map(lambda n: '{"t": ' + "[" * n + "]" * n + "}"),
    st.just('{"t": "a", "l": NaN}'),
    st.text(max_size=10),
)


WORD = st.text(st.characters(exclude_characters="\t,\n\r\"\x00 \x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
                              exclude_categories=["Cs", "Zs"]), min_size=1, max_size=6)
TAG = st.sampled_from(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "pos"])
LABEL = st.sampled_from(["pos", "neg", "0.5", "1", "4.25", "pos", "neg", "0.5", "2", "3.5", "nan", "1e999", ""])


@st.composite
def plausible(draw: st.DrawFn) -> str:
    """Mostly well-formed files (a header, one text and one label per row) with the odd bad cell."""
    kind = draw(st.sampled_from(["tsv", "csv", "jsonl", "conll"]))
    rows = draw(st.lists(st.tuples(st.lists(WORD, min_size=1, max_size=3).map(" ".join), LABEL), min_size=1,
                         max_size=6))
    if kind == "jsonl":
        label = st.one_of(LABEL, JSON_VALUE)
        return "\n".join(json.dumps({"t": t, "p": t, "l": draw(label) if draw(st.booleans()) else lab})
                         for t, lab in rows)
    if kind == "conll":
        # a WORD may be all whitespace to str.split (e.g. "\x1f"): such a row is a word "x" (a generator bug, fixed)
        return "\n".join(f"{(t.split() or ['x'])[0]} {draw(TAG)}" + ("\n" if draw(st.booleans()) else "")
                         for t, _ in rows)
    sep = "\t" if kind == "tsv" else ","
    return "\n".join([f"text{sep}label", *(f"{t}{sep}{lab}" for t, lab in rows)]) + "\n"


@st.composite
def table_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["table", "jsonl", "bytes", "plausible", "plausible"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "plausible":
        return draw(plausible()).encode("utf-8", "surrogatepass")
    if kind == "jsonl":
        text = draw(NEWLINE).join(draw(st.lists(JSON_LINE, max_size=5)))
    else:
        sep = draw(SEPARATOR)
        text = draw(NEWLINE).join(sep.join(row) for row in draw(ROWS))
    encoding = draw(ENCODING)
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") and draw(st.booleans()) else "replace")


TABLE_SPECS = [
    ("t.tsv", TableSpec()), ("t.tsv", TableSpec(header=False, label_kind="score")),
    ("t.tsv", TableSpec(text=0, pair=1, label=-1, quote_none=True)), ("t.csv", TableSpec(label_kind="score")),
    ("t.jsonl", TableSpec(text="t", label="l")), ("t.jsonl", TableSpec(text="t", pair="p", label="l",
                                                                      label_kind="score")),
]
FILE_LEVEL = ("no examples in the file", "no sentences in the file", "no utterances in the files",
              "a name but the file is read without a header", "in the header")


def _data_error_ok(exc: DataError, *paths: Path) -> None:
    assert exc.path in {str(p) for p in paths}, exc
    assert exc.line is not None or any(m in exc.message for m in FILE_LEVEL), exc


@SETTINGS
@given(content=table_bytes())
def test_table_readers_rows_or_data_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="mtbranch-data-") as tmp:
        for name, spec in TABLE_SPECS:
            p = Path(tmp) / name
            p.write_bytes(content)
            try:
                rows = read_table(p, spec)
            except DataError as exc:
                _data_error_ok(exc, p)
                event(f"{name}: DataError{' at a line' if exc.line else ''}")
                continue
            event(f"{name}: rows")
            for r in rows:
                assert isinstance(r.text, str) and not _has_surrogate([r.text])
                if spec.label_kind == "score":
                    assert isinstance(r.label, float) and math.isfinite(r.label)
                else:
                    assert isinstance(r.label, str) and r.label


@SETTINGS
@given(content=table_bytes(), fmt=st.sampled_from(["lines", "tsv", "csv", "jsonl"]))
def test_predict_input_reader_rows_or_data_error(content: bytes, fmt: str) -> None:
    """``mtbranch predict --input``: rows (texts with no lone surrogates) or a DataError naming the line."""
    with tempfile.TemporaryDirectory(prefix="mtbranch-input-") as tmp:
        p = Path(tmp) / "in.txt"
        p.write_bytes(content)
        text_col = "t" if fmt == "jsonl" else 0
        try:
            rows = list(InputReader(p, fmt=fmt, text=text_col))
        except DataError as exc:
            _data_error_ok(exc, p)
            event(f"{fmt}: DataError")
            return
        event(f"{fmt}: rows")
        for r in rows:
            assert isinstance(r.text, str) and not _has_surrogate([r.text])
            json.dumps(r.text, ensure_ascii=False).encode("utf-8")  # the JSONL output can be written


@st.composite
def seq_pair(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Aligned seq.in / seq.out (with the odd separator, wrong tag or count), or any two files."""
    if draw(st.booleans()):
        return draw(table_bytes()), draw(table_bytes())
    lines = draw(st.lists(st.lists(WORD | st.sampled_from(["a\u2028b", "c\x85d", "e\x0cf"]), max_size=4),
                          min_size=1, max_size=5))
    good = st.sampled_from(["O", "B-PER", "I-PER"])
    # str.split() (unicode whitespace: U+2028 too) makes the tokens of a line; one tag each, now and then one more
    tags = [" ".join(draw(good) for _ in " ".join(ws).split()) + (" O" if draw(st.integers(0, 19)) == 0 else "")
            for ws in lines]
    return "\n".join(" ".join(ws) for ws in lines).encode(), "\n".join(tags).encode()


@SETTINGS
@given(token_bytes=table_bytes(), seq=seq_pair(), tag_col=st.sampled_from([-1, 1]))
def test_token_readers_rows_or_data_error(token_bytes: bytes, seq: tuple[bytes, bytes], tag_col: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mtbranch-tokens-") as tmp:
        conll = Path(tmp) / "train.conll"
        conll.write_bytes(token_bytes)
        try:
            sentences = read_conll(conll, ConllSpec(tag_col=tag_col))
            assert all(len(s.tokens) == len(s.tags) and s.tokens for s in sentences)
            event("conll: rows")
        except DataError as exc:
            _data_error_ok(exc, conll)
            event("conll: DataError")
        seq_in, seq_out = Path(tmp) / "seq.in", Path(tmp) / "seq.out"
        seq_in.write_bytes(seq[0])
        seq_out.write_bytes(seq[1])
        try:
            utterances = read_seq_files(seq_in, seq_out)
            assert all(len(u.tokens) == len(u.tags) for u in utterances)
            # one utterance per "\n"-separated line: U+2028, U+0085, form feeds inside a line do not split it
            assert len(utterances) <= seq[0].decode("utf-8", "replace").count("\n") + 1
            event("seq: rows")
        except DataError as exc:
            _data_error_ok(exc, seq_in, seq_out)
            event("seq: DataError")
