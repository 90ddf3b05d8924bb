"""Texts to predict, streamed from a file or stdin: plain lines, TSV/CSV or JSONL. No torch.

Columns are chosen as for ``mtbranch train`` (an index or a header / field name). Rows are read one at a time,
so memory stays flat whatever the file size; every bad row is a :class:`~mtbranch.sdk.data.DataError` naming
the file and its 1-based line.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from mtbranch.sdk.data import NOT_A_FILE_HINT, Column, DataError, json_row, listed, not_a_file

InputFormat = Literal["auto", "lines", "tsv", "csv", "jsonl"]
INPUT_FORMATS: tuple[str, ...] = ("auto", "lines", "tsv", "csv", "jsonl")


@dataclass(frozen=True)
class InputRow:
    line: int  # 1-based line of the row's start in the input
    text: str
    pair: str | None = None


def input_format(path: str, fmt: str = "auto") -> str:
    """``auto``: JSONL for .jsonl/.ndjson/.json, TSV for .tsv, CSV for .csv, plain lines otherwise (and stdin)."""
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower() if path != "-" else ""
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".csv": "csv"}.get(suffix, "lines")


class InputReader:
    """Iterate :class:`InputRow` from ``path`` (``-``: stdin). ``position`` is the bytes read so far and ``size``
    the file's size (None for stdin), for a progress bar."""

    def __init__(self, path: str | os.PathLike[str], *, fmt: str = "auto", text: Column | None = None,
                 pair: Column | None = None, header: bool = True, encoding: str = "utf-8-sig") -> None:
        self.path = os.fspath(path)
        self.fmt = input_format(self.path, fmt)
        if self.fmt not in INPUT_FORMATS:
            raise DataError(f"unknown input format {fmt!r}", path=self.path, hint=f"one of {', '.join(INPUT_FORMATS)}")
        default: Column = "text" if self.fmt == "jsonl" else 0
        self.text_col: Column = default if text is None else text
        self.pair_col = pair
        if self.fmt == "lines" and pair is not None:
            raise DataError("plain-line input has no pair column", path=self.path,
                            hint="use a TSV/CSV/JSONL file (--format) for text pairs")
        self.header = header and self.fmt in ("tsv", "csv")
        self.encoding = encoding
        self.position = 0
        self.size: int | None = None
        if self.path != "-":
            if not os.path.isfile(self.path):
                raise DataError(f"input file {not_a_file(self.path)}", path=self.path, hint=NOT_A_FILE_HINT)
            self.size = os.path.getsize(self.path)

    # -- raw lines, decoded one by one so a bad byte is reported on its own line -------------------------
    def _lines(self, fh: IO[bytes]) -> Iterator[tuple[int, str]]:
        for n, raw in enumerate(fh, start=1):
            self.position += len(raw)
            if n == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise DataError("not UTF-8 text: the file starts with a UTF-16 byte order mark", path=self.path,
                                line=1, hint="convert it to UTF-8, e.g. `iconv -f utf-16 -t utf-8 FILE > NEW`")
            try:
                text = raw.decode("utf-8-sig" if n == 1 else self.encoding.replace("-sig", ""))
            except UnicodeDecodeError as exc:
                raise DataError(f"not valid {self.encoding.replace('-sig', '')}: {exc.reason} at byte {exc.start}",
                                path=self.path, line=n, hint="convert the file to UTF-8") from None
            yield n, text

    def __iter__(self) -> Iterator[InputRow]:
        if self.path == "-":
            yield from self._rows(sys.stdin.buffer)
            return
        with open(self.path, "rb") as fh:
            yield from self._rows(fh)

    def _rows(self, fh: IO[bytes]) -> Iterator[InputRow]:
        lines = self._lines(fh)
        if self.fmt == "lines":
            for n, text in lines:
                text = text.rstrip("\r\n")
                if text.strip():
                    yield InputRow(n, text)
            return
        if self.fmt == "jsonl":
            for n, text in lines:
                if not text.strip():
                    continue
                # deep nesting, huge integers, NaN literals: DataError; lone surrogates: U+FFFD (as over HTTP)
                yield self._row(json_row(text, self.path, n, surrogates="replace"), None, n)
            return
        yield from self._table(lines)

    def _table(self, lines: Iterator[tuple[int, str]]) -> Iterator[InputRow]:
        current = [0]

        def feed() -> Iterator[str]:
            for n, text in lines:
                current[0] = n
                yield text

        reader = csv.reader(feed(), delimiter="\t" if self.fmt == "tsv" else ",")
        names: dict[str, int] | None = None
        width = 0
        start = 1
        try:
            for row in reader:
                line, start = start, current[0] + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if self.header and names is None:
                    names = {name.strip(): i for i, name in enumerate(row)}
                    width = len(row)
                    continue
                if names is not None and len(row) != width:  # a stray separator shifts the columns after it
                    raise DataError(f"row has {len(row)} column(s) but the header has {width}", path=self.path,
                                    line=line, hint="check for a stray separator (tab or comma) in the text")
                yield self._row(row, names, line)
        except csv.Error as exc:
            raise DataError(f"unreadable row: {exc}", path=self.path, line=current[0]) from None

    def _row(self, row: list[str] | dict[str, Any], names: dict[str, int] | None, line: int) -> InputRow:
        text = self._pick(row, self.text_col, names, line, "text")
        pair = None if self.pair_col is None else self._pick(row, self.pair_col, names, line, "pair")
        return InputRow(line, text, pair)

    def _pick(self, row: list[str] | dict[str, Any], col: Column, names: dict[str, int] | None, line: int,
              what: str) -> str:
        if isinstance(row, dict):
            key = str(col)
            if key not in row:
                raise DataError(f"missing field {key!r} ({what})", path=self.path, line=line,
                                hint=f"{listed(row, 'fields here')}; choose with --{what}-col")
            value = row[key]
        else:
            idx = col
            if isinstance(col, str):
                if names is None:
                    raise DataError(f"{what} column {col!r} is a name but the file is read without a header",
                                    path=self.path, hint="give a column index, or read the file with its header")
                if col not in names:
                    raise DataError(f"no column named {col!r} ({what}) in the header", path=self.path, line=1,
                                    hint=listed(names))
                idx = names[col]
            assert isinstance(idx, int)
            if not -len(row) <= idx < len(row):
                raise DataError(f"row has {len(row)} column(s), {what} column {idx} is missing", path=self.path,
                                line=line, hint="check the separator (--format tsv or csv) and --text-col")
            value = row[idx]
        if not isinstance(value, str):
            raise DataError(f"{what} is {type(value).__name__}, not a string", path=self.path, line=line)
        return value
