"""Human output of ``validate`` and ``plugins`` that fits 80 columns and reads in a non-TTY log.

One line per branch (or plugin): what it is, then ``ok`` or its failing / warning checks by code, as ruff
lists violations; details follow as one finding per paragraph. Nothing is truncated: a long name makes its
line longer, never "sim…". Every value from a manifest or a plugin is printed as plain text (no Rich markup).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from mtbranch.cli.output import console, print_findings

STATUS_STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


def _columns(rows: Sequence[Sequence[str]], widest: int = 28, pad_last: bool = False) -> list[str]:
    """Left-aligned columns; a column is padded to its widest cell up to ``widest`` characters."""
    widths = [min(widest, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))] if rows else []
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines if pad_last else [x.rstrip() for x in lines]


def branch_status(report: Any, name: str | None) -> tuple[str, list[str]]:
    """``("ok" | "warn" | "FAIL", codes)`` for one branch, from the report's findings."""
    mine = [f for f in report.findings if f.branch == name]
    errors = sorted({f.code for f in mine if f.severity == "error"})
    warnings = sorted({f.code for f in mine if f.severity == "warning"})
    if errors:
        return "FAIL", errors + warnings
    return ("warn", warnings) if warnings else ("ok", [])


def print_validation(report: Any) -> None:
    if report.trunk:
        t = report.trunk
        console.print(Text(f"trunk {t['reference']}: {t['model_type']}, {t['num_layers']} layers, "
                           f"hidden {t['hidden_size']}"), soft_wrap=True)
    else:
        console.print("trunk: none given (trunk and tokenizer checks skipped)", style="yellow", markup=False)
    rows = []
    for b in report.branches:
        d = b.to_dict()
        where = "?" if d["attach_depth"] is None else f"depth {d['attach_depth']} +{d['num_layers']}"
        rows.append([str(d["name"] or b.path), where, str(d["head"] or "?"), str(d["source"] or "-")])
    for b, line in zip(report.branches, _columns(rows, pad_last=True), strict=True):
        status, codes = branch_status(report, b.name)
        text = Text(line + "  ")
        text.append(status, style=STATUS_STYLE[status])
        if codes:
            text.append(" " + " ".join(codes))
        console.print(text, soft_wrap=True)
    if report.findings:
        console.print()
        print_findings(report.findings)
    style = {"passed": "bold green", "passed-with-warnings": "bold yellow", "failed": "bold red"}[report.status]
    summary = Text(report.status, style=style)
    summary.append(f": {len(report.errors)} error(s), {len(report.warnings)} warning(s), "
                   f"{len(report.branches)} branch(es)")
    console.print(summary, soft_wrap=True)


def print_plugins(infos: Sequence[Any]) -> None:
    rows = []
    for i in infos:
        provides = [f"{label}: {', '.join(items)}" for label, items in
                    (("branches", i.branches), ("trunks", i.trunks), ("head types", getattr(i, "head_types", [])),
                     ("checks", getattr(i, "checks", [])), ("trunk families", getattr(i, "families", [])))
                    if items]
        if not provides:
            provides = ["hooks: " + (", ".join(h.removeprefix("mtbranch_") for h in i.hooks) or "none")]
        rows.append([i.name, f"{i.distribution or '-'} {i.version or ''}".rstrip(), "; ".join(provides)])
    for i, line in zip(infos, _columns(rows, widest=32), strict=True):
        console.print(Text(line, style="red" if i.errors else ""), soft_wrap=True)
        for e in i.errors:
            console.print(Text(f"    error: {e}", style="red"), soft_wrap=True)
    n_err = sum(1 for i in infos if i.errors)
    console.print(Text(f"{len(infos)} plugin(s), {sum(len(i.branches) for i in infos)} branch(es), "
                       f"{sum(len(i.trunks) for i in infos)} trunk(s)" + (f", {n_err} with errors" if n_err else ""),
                       style="red" if n_err else ""), soft_wrap=True)
