"""``mtbranch predict ARTIFACT --input FILE|-``: batch prediction over a file, streamed in bounded memory.

Rows come from :class:`mtbranch.sdk.inputs.InputReader` (plain lines, TSV/CSV, JSONL); results go out as JSONL,
one object per input row in input order, to stdout or atomically to ``--output FILE``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from mtbranch.cli.output import err_console

F = Callable[..., Any]
FILE_OPTIONS = ("input_path", "output_path", "input_format", "text_col", "pair_col", "no_header", "batch_size",
                "chunk_size", "no_progress")


def file_input_options(f: F) -> F:
    """Add --input and friends to ``predict``; with --input the file path runs instead of the TEXT path."""

    @functools.wraps(f)
    def wrapper(**kw: Any) -> Any:
        from mtbranch.errors import UsageError

        opts = {k: kw.pop(k) for k in FILE_OPTIONS}
        if opts["input_path"] is None:
            if opts["output_path"] is not None:
                raise UsageError("--output needs --input",
                                 hint="mtbranch predict OUT --input texts.txt --output p.jsonl")
            if not kw.get("texts"):
                raise UsageError("no input: give TEXT arguments or --input FILE (- for stdin)",
                                 hint='mtbranch predict composed/ "I loved this film"   or   --input texts.txt')
            return f(**kw)
        if kw.get("texts") or kw.get("pairs"):
            raise UsageError("TEXT arguments / --pair and --input together",
                             hint="put every text in the --input file (pairs in --pair-col)")
        predict_file(kw, **opts)
        return None

    options = [
        click.option("--input", "-i", "input_path", metavar="FILE", default=None,
                     help="Read the texts from FILE (- for stdin): plain lines, TSV, CSV or JSONL; writes JSONL."),
        click.option("--output", "output_path", type=click.Path(path_type=Path), default=None,
                     help="With --input: write the JSONL here (atomically) instead of stdout."),
        click.option("--format", "input_format", type=click.Choice(["auto", "lines", "tsv", "csv", "jsonl"]),
                     default="auto", show_default=True,
                     help="--input format (auto: .jsonl/.tsv/.csv by suffix, plain lines otherwise and for stdin)."),
        click.option("--text-col", default=None,
                     help="--input text column: index or header/field name (default 0, JSONL: text)."),
        click.option("--pair-col", default=None, help="--input second-text column for pair tasks."),
        click.option("--no-header", is_flag=True, help="The --input TSV/CSV has no header row."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
                     help="With --input: texts per model call."),
        click.option("--chunk-size", type=click.IntRange(1), default=1024, show_default=True,
                     help="--input rows held in memory at a time."),
        click.option("--no-progress", is_flag=True, help="With --input: no progress bar on stderr."),
    ]
    for o in reversed(options):
        wrapper = o(wrapper)
    return wrapper


@contextlib.contextmanager
def _sink(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a temporary sibling of ``path`` renamed over it only when every row is written."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = path.absolute()
    if target.is_dir():
        from mtbranch.errors import MtbranchError

        raise MtbranchError("--output is a directory", path=str(path), hint="give a file name, e.g. preds.jsonl")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:  # write() names no file: say which
            from mtbranch.errors import os_error

            raise os_error(exc, "writing --output", str(target)) from None
        raise


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def predict_file(kw: dict[str, Any], *, input_path: str, output_path: Path | None, input_format: str,
                 text_col: str | None, pair_col: str | None, no_header: bool, batch_size: int, chunk_size: int,
                 no_progress: bool) -> None:
    from mtbranch.cli.output import show_warnings
    from mtbranch.cli.threads import apply_threads
    from mtbranch.composition.artifact import load
    from mtbranch.io.guard import check_output
    from mtbranch.sdk.data import parse_column
    from mtbranch.sdk.inputs import InputReader

    show_warnings()
    if output_path is not None:  # before reading or loading anything: never a FIFO, a device or an input
        output_path = check_output(output_path, "predictions", inputs=[kw["artifact"], input_path])
    reader = InputReader(input_path, fmt=input_format, text=None if text_col is None else parse_column(text_col),
                         pair=None if pair_col is None else parse_column(pair_col), header=not no_header)
    apply_threads(kw.get("threads"))
    load_kw = {k: kw[k] for k in ("dtype", "device", "backend") if kw.get(k) is not None}
    model = load(kw["artifact"], verify=not kw.get("no_verify"), quantize=kw.get("quantize"), **load_kw)
    if kw.get("verbose"):
        err_console.print(f"backend: {model.backend_reason}", markup=False, soft_wrap=True)
    tasks = list(kw.get("tasks") or ())
    if reader.pair_col is None and not tasks:  # pair tasks are skipped when the input has no pair column
        tasks = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    pending: collections.deque[Any] = collections.deque()

    as_words = bool(kw.get("as_words"))
    if as_words and reader.pair_col is not None:
        from mtbranch.errors import UsageError

        raise UsageError("--words and --pair-col together", hint="--words is for token tasks, which take one text")

    def feed() -> Iterator[Any]:
        for row in reader:
            pending.append(row)
            if as_words:
                yield row.text.split()
            else:
                yield row.text if reader.pair_col is None else (row.text, row.pair)

    progress = None if no_progress else _progress(reader)
    n = 0
    with _sink(output_path) as out, progress or contextlib.nullcontext():
        task_id = progress.add_task("predicting", total=reader.size) if progress else None
        for res in model.predict_iter(feed(), tasks=tasks or None, raw=bool(kw.get("raw")), batch_size=batch_size,
                                      chunk_size=chunk_size, words=as_words,
                                      aggregation=kw.get("aggregation") or "first"):
            row = pending.popleft()
            obj: dict[str, Any] = {"line": row.line, "text": row.text}
            if row.pair is not None:
                obj["pair"] = row.pair
            obj["results"] = res
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
            if progress is not None and n % 256 == 0:
                progress.update(task_id, completed=reader.position, rows=n)
        if progress is not None:
            progress.update(task_id, completed=reader.position, rows=n)
    err_console.print(f"predicted {n} row(s) from {input_path}" + (f" -> {output_path}" if output_path else ""),
                      markup=False)


def _progress(reader: Any) -> Any:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    cols: list[Any] = [TextColumn("{task.description}"), TextColumn("{task.fields[rows]} rows")]
    if reader.size is not None:
        cols += [BarColumn(), TaskProgressColumn()]
    cols.append(TimeElapsedColumn())
    p = Progress(*cols, console=err_console, transient=False)
    p.add_task = functools.partial(p.add_task, rows=0)  # type: ignore[method-assign]
    return p
