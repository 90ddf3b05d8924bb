"""Console helpers shared by the commands: rich consoles, JSON output, finding rendering."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

# emoji=False: ":smile:" in a user's text must print as typed, not as an emoji
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def esc(value: object) -> str:
    """User-controlled text (a path, a name, an error message) made safe to put inside rich markup:
    ``[red]x[/red]`` or ``[/]`` in it prints literally instead of styling or crashing."""
    return escape(str(value))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def display_text(text: str) -> str:
    """A user's text for human output: as given, except control characters (tab and newline included) and
    lone surrogates, which are shown as Python escapes (``\\x1b``, ``\\n``, ``\\udcff``) so the text
    cannot move the cursor, recolour the terminal or make the output unencodable. ``--json`` keeps it exact."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def print_predictions(texts: Sequence[str], results: Sequence[dict[str, Any]],
                      summary: Callable[[dict[str, Any]], str], out: Console | None = None) -> None:
    """``predict``'s human output: each text in bold, then one line per task. No markup is parsed and no line
    is wrapped, so the echo is the text itself (see :func:`display_text`)."""
    out = out or console
    for text, res in zip(texts, results, strict=True):
        out.print(Text(display_text(text), style="bold"), soft_wrap=True)
        for task, r in res.items():
            out.print(Text(display_text(f"  {task}: {summary(r)}")), soft_wrap=True)


def check_argv_text(values: Sequence[str], what: str) -> None:
    """Refuse command-line text that was not valid UTF-8 (Python hands such bytes over as lone surrogates,
    which no tokenizer, terminal or JSON encoder takes): exit 1 naming the argument and the bad byte."""
    from mtbranch.errors import MtbranchError

    for i, v in enumerate(values, 1):
        m = re.search("[\ud800-\udfff]", v)
        if m is None:
            continue
        code = ord(m.group())
        bad = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        raise MtbranchError(f"{what} #{i} is not valid UTF-8 text ({bad} at character {m.start()})",
                            hint="pass UTF-8 text: check the terminal's locale (e.g. LANG=C.UTF-8) or convert "
                                 "the text first (iconv -t UTF-8)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_findings(findings: list[Any]) -> None:
    for f in findings:
        style = SEVERITY_STYLE.get(f.severity, "")
        where = f" {f.location}" if f.location else ""
        console.print(f"[{style}]{f.code} {f.severity}[/]" + (f" [bold]{esc(f.branch)}[/]" if f.branch else "")
                      + esc(where), markup=True)
        console.print(f"    {f.message}", markup=False)
        if f.hint:
            console.print(f"    hint: {f.hint}", style="dim", markup=False)


class _WarningsToStderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"warning: {record.getMessage()}", style="yellow", markup=False)


def show_warnings() -> None:
    """Print mtbranch's logged warnings (e.g. inputs truncated to max_length) on stderr, once per process."""
    logger = logging.getLogger("mtbranch")
    if not any(isinstance(h, _WarningsToStderr) for h in logger.handlers):
        logger.addHandler(_WarningsToStderr(logging.WARNING))
