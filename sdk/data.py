"""Training data readers: tables (TSV/CSV/JSONL) of texts or text pairs with labels or scores, and
token/tag files (CoNLL columns, seq.in/seq.out) for token classification. No torch.

Every bad row raises :class:`DataError` naming the file and the 1-based line, so a user can fix the data.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtbranch.errors import MtbranchError
from mtbranch.heads.training import LabelError
from mtbranch.io.files import no_duplicate_keys, sha256_file
from mtbranch.spec.heads import is_bio_tag

Column = int | str
LabelKind = Literal["class", "score"]
LabelReader = Callable[[Any], Any]  # a label cell -> the example's label; ValueError (LabelError) for a bad one


class DataError(MtbranchError):
    """A bad row: ``path`` is the file, ``line`` the 1-based line number."""

    def __init__(self, message: str, *, path: str | os.PathLike[str], line: int | None = None,
                 hint: str | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message, path=str(path), hint=hint)


@dataclass(frozen=True)
class TextExample:
    text: str
    pair: str | None = None
    label: Any = None  # as the task's label reader returns it: a class name, a float score, a tuple of names...


@dataclass(frozen=True)
class TokenExample:
    tokens: list[str]
    tags: list[str]


@dataclass
class TableSpec:
    """How to read a table: which columns hold the text, the optional pair text and the label.

    ``read_label`` (a task's label reader, :attr:`mtbranch.heads.training.HeadTraining.read_label`) reads the
    label cell; without one, ``label_kind`` picks the built-in class-name or score reader."""

    text: Column = 0
    pair: Column | None = None
    label: Column | None = 1
    label_kind: LabelKind = "class"
    header: bool = True
    quote_none: bool = False
    fmt: Literal["auto", "tsv", "csv", "jsonl"] = "auto"
    encoding: str = "utf-8-sig"  # tolerates a BOM (GLUE's MRPC files start with one)
    read_label: LabelReader | None = None

    def label_reader(self) -> LabelReader:
        return self.read_label or LABEL_READERS[self.label_kind]


@dataclass
class ConllSpec:
    token_col: int = 0
    tag_col: int = -1  # CoNLL-2003: token POS chunk NER
    separator: str | None = None  # None: any whitespace
    encoding: str = "utf-8-sig"  # also used for seq.in / seq.out


@dataclass
class Dataset:
    """Examples plus where they came from (for the branch's training provenance)."""

    examples: list[Any]
    sources: list[dict[str, str]] = field(default_factory=list)


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be read as a data file, in words: a directory, a pipe or device (``<(cat f)`` is a
    pipe), a dangling link, or missing. "does not exist" only when it does not."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link to nothing" if os.path.islink(path) else "does not exist"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a pipe (a FIFO or a shell's <(...)), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


NOT_A_FILE_HINT = "give the path of a regular file (for a pipe, write it to a file first; predict reads stdin as -)"


def listed(names: Any, what: str = "columns") -> str:
    """``columns: a, b, c`` for a hint, each name cut short and at most 12 of them: a table read with the wrong
    separator has one column, its whole first line (which may be long, or not meant to be shown)."""
    names = [str(n) for n in names]
    shown = [n if len(n) <= 30 else n[:27] + "..." for n in names[:12]]
    more = f" (and {len(names) - 12} more)" if len(names) > 12 else ""
    one = " (one column: is the separator right? tab for TSV, comma for CSV)" if len(names) == 1 else ""
    return f"{what}: {', '.join(map(repr, shown))}{more}{one}"


def _source(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256_file(path)}


def _open(path: Path, encoding: str = "utf-8-sig") -> Any:
    """Text mode, bytes that do not decode kept as lone surrogates (surrogateescape) so that
    :func:`_lines` can name the line and column of the first bad byte."""
    if path.is_dir():
        raise DataError("a folder, not a data file", path=path,
                        hint="give a TSV/CSV/JSONL or CoNLL file, or a folder of seq.in + seq.out "
                             "(token classification) or seq.in + label (classification)")
    if not path.is_file():
        raise DataError(f"data file {not_a_file(path)}", path=path, hint=NOT_A_FILE_HINT)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", path=path, hint="e.g. utf-8, latin-1, utf-16") from None
    return open(path, encoding=encoding, errors="surrogateescape", newline="")


ENCODING_HINT = ("convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW`), or give its encoding "
                 "(--encoding latin-1; Python: TableSpec/ConllSpec(encoding=...))")


def _check_line(line: str, path: Path, n: int, encoding: str) -> str:
    """A decoded line, or a DataError naming the first byte the encoding could not decode (or a NUL)."""
    bad = _UNDECODABLE.search(line)
    if bad is not None:
        code = ord(bad.group())
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"code point U+{code:04X}"
        name = "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding
        if n == 1 and line[:2] in ("\udcff\udcfe", "\udcfe\udcff"):
            raise DataError(f"not {name} text: the file starts with a UTF-16 byte order mark", path=path, line=n,
                            hint=ENCODING_HINT)
        raise DataError(f"not {name} text: {what} at column {bad.start() + 1}", path=path, line=n,
                        hint=ENCODING_HINT)
    if "\x00" in line:
        raise DataError(f"NUL character at column {line.index(chr(0)) + 1}: the file looks like UTF-16 or binary, "
                        "not text", path=path, line=n, hint=ENCODING_HINT)
    return line


_UNDECODABLE = re.compile("[\ud800-\udfff]")


def _lines(fh: Any, path: Path, encoding: str) -> Any:
    """``(line number, checked line)`` for each line of ``fh`` (split on \\n, \\r\\n and \\r only)."""
    n = 0
    try:
        for n, raw in enumerate(fh, start=1):
            yield n, _check_line(raw, path, n, encoding)
    except UnicodeDecodeError as exc:  # codecs such as utf-16 that surrogateescape cannot cover
        raise DataError(f"not {encoding} text: {exc.reason}", path=path, line=n + 1, hint=ENCODING_HINT) from None


def _detect_format(path: Path, fmt: str, encoding: str = "utf-8-sig") -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        # STS Benchmark's *.csv files are tab-separated; sniff the first line rather than trust the name
        with _open(path, encoding) as fh:
            first = fh.readline()
        return "tsv" if "\t" in first else "csv"
    return "tsv"


def _pick(row: list[str] | dict[str, Any], col: Column, names: dict[str, int] | None, path: Path,
          line: int, what: str) -> Any:
    if isinstance(row, dict):
        key = col if isinstance(col, str) else None
        if key is None:
            raise DataError(f"{what} column must be a field name for JSONL, not index {col}", path=path)
        if key not in row:
            raise DataError(f"missing field {key!r} ({what})", path=path, line=line,
                            hint=listed(row, "fields here"))
        return row[key]
    idx = col
    if isinstance(col, str):
        if names is None:
            raise DataError(f"{what} column {col!r} is a name but the file is read without a header", path=path,
                            hint="give a column index, or read the file with its header")
        if col not in names:
            raise DataError(f"no column named {col!r} ({what}) in the header", path=path, line=1,
                            hint=listed(names))
        idx = names[col]
    assert isinstance(idx, int)
    if not -len(row) <= idx < len(row):
        raise DataError(f"row has {len(row)} column(s), {what} column {idx} is missing", path=path, line=line,
                        hint="check the separator (tab vs comma) and the quoting (--quote-none)")
    return row[idx]


def _show(value: Any) -> str:
    """A short repr for messages (a JSON integer of 5,000 digits has no repr under Python's digit limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_score(value: Any) -> float:
    """A regression label: a finite number (a JSON number or a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise LabelError(f"score is a {_json_type(value)}, not a number")
    try:
        score = float(value)
    except (ValueError, OverflowError):
        raise LabelError(f"score {_show(value)} is not a number") from None
    if not math.isfinite(score):
        raise LabelError(f"score {_show(value)} is not a finite number",
                         hint="regression scores must be finite (no nan, inf, or values beyond 1.8e308)")
    return score


def read_class_label(value: Any) -> str:
    """A class label: a non-empty string or an integer, as a stripped string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LabelError("empty label")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LabelError(f"label is a {_json_type(value)}, not a class name",
                         hint="class labels are strings or integers; for numeric targets train a regression task")
    return str(value).strip()


LABEL_READERS: dict[str, LabelReader] = {"class": read_class_label, "score": read_score}


def _label(value: Any, read: LabelReader, path: Path, line: int) -> Any:
    """``read(value)``, a refusal turned into a DataError naming the file and line."""
    try:
        return read(value)
    except ValueError as exc:
        raise DataError(str(exc), path=path, line=line, hint=getattr(exc, "hint", None)) from None


def _json_type(value: Any) -> str:
    kind = {bool: "boolean", list: "JSON array", dict: "JSON object", float: "float", type(None): "null"}.get(
        type(value), type(value).__name__)
    return kind if isinstance(value, list | dict) else f"{kind} ({_show(value)})"


def _text(value: Any, path: Path, line: int, what: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{what} is {type(value).__name__}, not a string", path=path, line=line)
    return value.strip()


def _rows(path: Path, spec: TableSpec) -> Any:
    """Yield ``(line_number, row)``; for JSONL, rows are dicts."""
    fmt = _detect_format(path, spec.fmt, spec.encoding)
    with _open(path, spec.encoding) as fh:
        if fmt == "jsonl":
            for n, raw in _lines(fh, path, spec.encoding):
                if not raw.strip():
                    continue
                yield n, json_row(raw, path, n)
            return
        reader = csv.reader((line for _, line in _lines(fh, path, spec.encoding)),
                            delimiter="\t" if fmt == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if spec.quote_none else csv.QUOTE_MINIMAL)
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield reader.line_num, row
        except csv.Error as exc:
            raise DataError(f"unreadable row: {exc}", path=path, line=reader.line_num,
                            hint="for text with stray quotes, read with quoting disabled (--quote-none)") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_row(raw: str, path: str | os.PathLike[str], n: int, *, surrogates: Literal["error", "replace"] = "error"
              ) -> dict[str, Any]:
    """One JSONL line -> an object, or a DataError naming the line (also for nesting past the recursion limit,
    integers over Python's digit limit, ``NaN``/``Infinity`` literals). A string field spelling a lone surrogate
    (``"\\ud800"``, no UTF-8 form) is an error for training data, or becomes U+FFFD (``surrogates="replace"``:
    texts to predict)."""
    try:
        obj = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=no_duplicate_keys)  # each key once
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=path, line=n) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path=path, line=n) from None
    except ValueError as exc:  # NaN/Infinity literals, integers over Python's digit limit, a key given twice
        raise DataError(f"invalid JSON: {str(exc).split(';')[0]}", path=path, line=n) from None
    if not isinstance(obj, dict):
        raise DataError("JSONL row is not an object", path=path, line=n)
    if _SURROGATE_ESCAPE.search(raw):
        for key, value in obj.items():
            if isinstance(value, str) and (bad := _UNDECODABLE.search(value)):
                if surrogates == "error":
                    raise DataError(f"field {key!r} holds a lone surrogate (\\u{ord(bad.group()):04x}), which has no "
                                    "UTF-8 form", path=path, line=n, hint="fix the text's escaping in that line")
                obj[key] = _UNDECODABLE.sub("\ufffd", value)
    return obj


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_table(path: str | os.PathLike[str], spec: TableSpec | None = None) -> list[TextExample]:
    """Texts (and pair texts) with class labels or float scores from a TSV, CSV or JSONL file."""
    spec = spec or TableSpec()
    p = Path(path)
    names: dict[str, int] | None = None
    width = 0
    out: list[TextExample] = []
    for n, row in _rows(p, spec):
        if names is None and spec.header and not isinstance(row, dict):
            names = {name.strip(): i for i, name in enumerate(row)}
            width = len(row)
            continue
        if names is not None and len(row) != width:  # an extra separator would shift every column after it
            raise DataError(f"row has {len(row)} column(s) but the header has {width}", path=p, line=n,
                            hint="check for a stray separator (tab or comma) in the text, and the quoting "
                                 "(--quote-none)")
        text = _text(_pick(row, spec.text, names, p, n, "text"), p, n, "text")
        pair = None if spec.pair is None else _text(_pick(row, spec.pair, names, p, n, "pair"), p, n, "pair")
        label = None if spec.label is None else _label(_pick(row, spec.label, names, p, n, "label"),
                                                       spec.label_reader(), p, n)
        out.append(TextExample(text, pair, label))
    if not out:
        raise DataError("no examples in the file", path=p)
    return out


def read_conll(path: str | os.PathLike[str], spec: ConllSpec | None = None) -> list[TokenExample]:
    """Sentences from a CoNLL column file: one token per line, blank lines between sentences,
    ``-DOCSTART-`` lines skipped."""
    spec = spec or ConllSpec()
    p = Path(path)
    out: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    with _open(p, spec.encoding) as fh:
        for n, raw in _lines(fh, p, spec.encoding):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    out.append(TokenExample(tokens, tags))
                    tokens, tags = [], []
                continue
            cols = line.split(spec.separator)
            if cols[0] == "-DOCSTART-":
                continue
            for idx, what in ((spec.token_col, "token"), (spec.tag_col, "tag")):
                if not -len(cols) <= idx < len(cols):
                    raise DataError(f"line has {len(cols)} column(s), {what} column {idx} is missing",
                                    path=p, line=n)
            tokens.append(cols[spec.token_col])
            tags.append(_check_tag(cols[spec.tag_col], p, n))
    if tokens:
        out.append(TokenExample(tokens, tags))
    if not out:
        raise DataError("no sentences in the file", path=p)
    return out


def _check_tag(tag: str, path: Path, line: int) -> str:
    if not is_bio_tag(tag):
        raise DataError(f"tag {tag!r} is not a BIO tag (O, B-X or I-X)", path=path, line=line,
                        hint="check the tag column (--tag-col); CoNLL-2003 keeps NER tags in the last column")
    return tag


def read_seq_files(seq_in: str | os.PathLike[str], seq_out: str | os.PathLike[str],
                   encoding: str = "utf-8-sig") -> list[TokenExample]:
    """Aligned token/tag line files (SNIPS/ATIS layout): line i of seq.in and seq.out is one utterance."""
    pin, pout = Path(seq_in), Path(seq_out)
    lines_in, lines_out = (_seq_lines(f, encoding) for f in (pin, pout))
    if len(lines_in) != len(lines_out):
        raise DataError(f"{len(lines_in)} lines in {pin.name} but {len(lines_out)} in {pout.name}", path=pout,
                        line=min(len(lines_in), len(lines_out)) + 1)
    out: list[TokenExample] = []
    for n, (a, b) in enumerate(zip(lines_in, lines_out, strict=True), start=1):
        tokens, tags = a.split(), b.split()
        if not tokens and not tags:
            continue
        if len(tokens) != len(tags):
            raise DataError(f"{len(tokens)} tokens but {len(tags)} tags", path=pout, line=n)
        out.append(TokenExample(tokens, [_check_tag(t, pout, n) for t in tags]))
    if not out:
        raise DataError("no utterances in the files", path=pin)
    return out


# The folder layouts (SNIPS/ATIS): line i of each file is one utterance.
TOKEN_FOLDER = ("seq.in", "seq.out")
LABEL_FOLDER = ("seq.in", "label")
MULTI_LABEL_HINT = ("labels joined by '#' name several intents of one utterance: they are trained as one class each "
                    "(the combination); a multi-label head type (examples/head-multilabel) trains them as a set, see "
                    "docs/cli.md \"Labels joined by '#'\"")


def _folder_files(folder: Path, names: tuple[str, ...], task: str) -> list[Path]:
    """The layout's files in ``folder``; a folder without them is an error naming what was looked for."""
    files = [folder / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        present = sorted(x.name for x in folder.iterdir())[:8]
        raise DataError(f"a {task} data folder needs {' and '.join(names)}; {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} missing (the folder holds: "
                        f"{', '.join(present) or 'nothing'})", path=folder,
                        hint=f"give a folder with {' + '.join(names)} (one utterance per line), or a data file")
    return files


def load_token_data(path: str | os.PathLike[str], spec: ConllSpec | None = None) -> Dataset:
    """A CoNLL file, or a directory holding ``seq.in`` and ``seq.out``."""
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p, TOKEN_FOLDER, "token/tag")
        seq_in, seq_out = files
        return Dataset(read_seq_files(seq_in, seq_out, encoding=(spec or ConllSpec()).encoding),
                       [_source(f) for f in files])
    return Dataset(read_conll(p, spec), [_source(p)])


def read_seq_labels(seq_in: str | os.PathLike[str], label: str | os.PathLike[str],
                    encoding: str = "utf-8-sig", read_label: LabelReader = read_class_label) -> list[TextExample]:
    """Aligned text/label line files (SNIPS/ATIS intents): line i of ``seq.in`` is the text, of ``label`` its
    label, read by ``read_label`` (default: one class name). The text's tokens are joined by single spaces, as
    the branch will see a typed sentence."""
    pin, plab = Path(seq_in), Path(label)
    texts, labels = (_seq_lines(f, encoding) for f in (pin, plab))
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} lines in {pin.name} but {len(labels)} in {plab.name}", path=plab,
                        line=min(len(texts), len(labels)) + 1)
    out = []
    for n, (text, lab) in enumerate(zip(texts, labels, strict=True), start=1):
        if not text.strip() and not lab.strip():
            continue
        if not text.strip() or not lab.strip():
            raise DataError(f"an empty {'text' if not text.strip() else 'label'}", path=plab if text.strip() else pin,
                            line=n)
        out.append(TextExample(" ".join(text.split()), None, _label(lab.strip(), read_label, plab, n)))
    if not out:
        raise DataError("no utterances in the files", path=pin)
    joined = sum(1 for e in out if isinstance(e.label, str) and "#" in e.label)
    if joined:
        import logging

        logging.getLogger("mtbranch.sdk").warning("%s: %d label(s) join several intents with '#': %s", plab, joined,
                                                  MULTI_LABEL_HINT)
    return out


def _seq_lines(path: Path, encoding: str) -> list[str]:
    """The file's lines, split on "\n" only (U+2028, U+0085, form feeds inside a line are not line breaks)."""
    with _open(path, encoding) as fh:
        try:
            text = fh.read()
        except UnicodeDecodeError as exc:  # codecs such as utf-16 that surrogateescape cannot cover
            raise DataError(f"not {encoding} text: {exc.reason}", path=path, hint=ENCODING_HINT) from None
    lines = [_check_line(line.removesuffix("\r"), path, n, encoding)
             for n, line in enumerate(text.removesuffix("\n").split("\n"), start=1)]
    return [] if lines == [""] else lines


def load_table_data(path: str | os.PathLike[str], spec: TableSpec | None = None) -> Dataset:
    """A TSV/CSV/JSONL table, or a directory holding ``seq.in`` (texts) and ``label`` (one class a line)."""
    p = Path(path)
    if p.is_dir():
        spec = spec or TableSpec()
        if spec.label_reader() is read_score or spec.pair is not None:
            raise DataError("a data folder (seq.in + label) holds single texts with class labels", path=p,
                            hint="for regression or text pairs give a TSV/CSV/JSONL table")
        files = _folder_files(p, LABEL_FOLDER, "text/label")
        seq_in, label = files
        return Dataset(read_seq_labels(seq_in, label, encoding=spec.encoding, read_label=spec.label_reader()),
                       [_source(f) for f in files])
    return Dataset(read_table(p, spec), [_source(p)])


def load_task_data(task: str, path: str | os.PathLike[str], *, text_col: str = "0", pair_col: str | None = None,
                   label_col: str = "1", header: bool = True, quote_none: bool = False,
                   fmt: Literal["auto", "tsv", "csv", "jsonl"] = "auto", tag_col: int = -1,
                   encoding: str = "utf-8-sig") -> Dataset:
    """Read one split for an SDK task (a trainable head type, :mod:`mtbranch.sdk.tasks`): CoNLL / seq files for
    token data, else a table whose columns are given as the CLI and build recipes give them (an index or a header
    name) and whose label cells the task's label reader reads."""
    from mtbranch.sdk.tasks import get_task

    training = get_task(task).training
    if training.data == "tokens":
        return load_token_data(path, ConllSpec(tag_col=tag_col, encoding=encoding))
    spec = TableSpec(text=parse_column(text_col), pair=None if pair_col is None else parse_column(pair_col),
                     label=parse_column(label_col), read_label=training.read_label,
                     header=header, quote_none=quote_none, fmt=fmt, encoding=encoding)
    return load_table_data(path, spec)


def split_dev(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out ``fraction`` of ``data`` as a dev set: seeded, stratified by class label (each label keeps its
    share, and a label with 2+ examples keeps at least one on each side); for scores and tag sequences a
    seeded random split. Both parts keep the file order; their sources record the split."""
    import random

    if not 0 < fraction < 1:
        raise MtbranchError(f"--dev-split must be between 0 and 1 (exclusive), not {fraction}",
                            hint="e.g. --dev-split 0.1 holds out 10% of the training data")
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(data.examples):
        key = str(e.label) if isinstance(e, TextExample) and isinstance(e.label, str) else ""
        groups.setdefault(key, []).append(i)
    rng = random.Random(seed)
    dev_idx: set[int] = set()
    for key in sorted(groups):
        idx = groups[key][:]
        rng.shuffle(idx)
        n = round(len(idx) * fraction)
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        dev_idx.update(idx[:n])
    if not dev_idx or len(dev_idx) == len(data.examples):
        raise MtbranchError(f"--dev-split {fraction} of {len(data.examples)} examples leaves an empty split",
                            hint="use more data or another fraction")
    note = f"{fraction:g} held out, stratified, seed {seed}"
    train = [e for i, e in enumerate(data.examples) if i not in dev_idx]
    dev = [e for i, e in enumerate(data.examples) if i in dev_idx]
    return (Dataset(train, [{**s, "split": f"train: rest after {note}"} for s in data.sources]),
            Dataset(dev, [{**s, "split": f"dev: {note}"} for s in data.sources]))


def parse_column(value: str) -> Column:
    """CLI helper: ``'3'`` is an index, ``'sentence'`` a name."""
    return int(value) if value.lstrip("-").isdigit() else value
