"""Console helpers shared by the commands: rich consoles, JSON output, finding rendering."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_findings(findings: list[Any]) -> None:
    for f in findings:
        style = SEVERITY_STYLE.get(f.severity, "")
        where = f" {f.location}" if f.location else ""
        console.print(f"[{style}]{f.code} {f.severity}[/]" + (f" [bold]{f.branch}[/]" if f.branch else "")
                      + f"{where}", markup=True)
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
