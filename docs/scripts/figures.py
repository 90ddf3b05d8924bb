"""Which figures on docs/results.md and docs/benchmarks.md are backed by committed raw JSON.

    python docs/scripts/figures.py            # report, per table: figures found / figures
    python docs/scripts/figures.py --mark     # diagnostic: a marker above each table not fully found

Definitions (tests/test_docs_figures.py checks them on every run):

* A *figure* is a number in a table body row (a line starting with ``|`` after the table's header and ``|---|``
  lines), outside inline code spans, that has a decimal point (``88.07``, ``0.95``, ``8.6e-6``), a ``%`` or an
  ``x`` suffix (``98.5%``, ``3.70x``, ``12x``), or an exponent (``1e-5``). Plain integers (epochs, layers,
  counts, thread numbers) are not figures. Signs are ignored (``-0.80`` is the figure ``0.80``).
* *Found*: some number ``v`` in the committed raw JSON, or ``100 * v`` (fractions shown as percentages or
  points), rounds to the figure at the figure's precision (within half a unit of its last digit).
* *Committed raw JSON*, per page: for docs/results.md ``docs/results/*.json[l]`` and
  ``docs/results/platform/*.json`` (the raw outputs of the commands the page names) and the shipped branches' manifests
  (``examples/branches-out/*/manifest.json``: only the values under a key naming a dev metric or the teacher,
  which the training run wrote); for docs/benchmarks.md, per table, the ``docs/benchmarks/*.json`` files named
  in its section (from the heading above the table down to the table: the command that wrote them), so that a
  figure cannot be "found" by coincidence in another measurement's JSON.
* Every table figure must be found: tests/test_docs_figures.py fails on any table with a figure that is not,
  and on a page that still carries a marker. ``--mark`` writes a visible marker line above such a table
  (``*Raw JSON: n of m ...*``, then a blank line), a diagnostic while JSON is being added, never a way to pass.
  There is no exclusion list: hardware facts and limits on these pages are written in prose, not in tables.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {  # page -> the committed raw JSON its figures may come from ("section": the files its section names)
    "docs/results.md": ("docs/results/*.json", "docs/results/*.jsonl", "docs/results/platform/*.json",
                        "examples/branches-out/*/manifest.json"),
    "docs/benchmarks.md": ("section",),
}
NAMED_JSON = re.compile(r"docs/(?:results|benchmarks)/[\w.-]+\.jsonl?")
PAGES = tuple(ROOT / page for page in SOURCES)
MANIFEST_KEYS = re.compile(r"dev|metric|teacher")  # manifest values that are results, not hyperparameters
MARK_PREFIX = "*Raw JSON: "
FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%|x)?(?![\w.])")
CODE = re.compile(r"`[^`]*`")


def figures_in_row(row: str) -> list[str]:
    """The figures of one table row, as written (``98.5%`` -> ``98.5``; ``3.70x`` -> ``3.70``)."""
    text = CODE.sub(" ", row)
    out = []
    for m in FIGURE.finditer(text):
        number, suffix = m.group(1), m.group(2)
        if suffix or "." in number or "e" in number:
            out.append(number)
    return out


def numbers(value: object, keep: re.Pattern[str] | None = None, path: str = "") -> Iterator[float]:
    """Every finite number in a JSON value; with ``keep``, only those whose key path matches it."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if math.isfinite(value) and (keep is None or keep.search(path)):
            yield float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, keep, f"{path}/{k}")
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v, keep, path)


def file_numbers(path: Path, keep: re.Pattern[str] | None = None) -> list[float]:
    text = path.read_text()
    docs = [text] if path.suffix == ".json" else text.splitlines()
    return [v for doc in docs if doc.strip() for v in numbers(json.loads(doc), keep)]


Values = list[float] | Callable[[list[str], int], list[float]]


def committed_numbers(page: str, root: Path = ROOT) -> Values:
    """The numbers a page's figures may be found in: one list for the page, or (section-scoped pages) a function
    of the page's lines and a table's header index."""
    if SOURCES[page] == ("section",):
        def in_section(lines: list[str], header: int) -> list[float]:
            start = max((i for i in range(header) if lines[i].startswith("#")), default=0)
            named = sorted({m.group(0) for ln in lines[start:header] for m in NAMED_JSON.finditer(ln)})
            return [v for name in named if (root / name).is_file() for v in file_numbers(root / name)]
        return in_section
    found: list[float] = []
    for pattern in SOURCES[page]:
        keep = MANIFEST_KEYS if pattern.endswith("manifest.json") else None
        for path in sorted(root.glob(pattern)):
            found.extend(file_numbers(path, keep))
    return found


def is_found(figure: str, values: Iterable[float]) -> bool:
    f = float(figure)
    mantissa = figure.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(figure.split("e")[1]) if "e" in figure else 0
    half = 0.5 * 10.0 ** (exponent - decimals) + 1e-12
    return any(abs(abs(v) - f) <= half or abs(abs(100 * v) - f) <= half for v in values)


def tables(lines: list[str]) -> Iterator[tuple[int, list[int]]]:
    """(index of the header line, indices of the body rows) for each markdown table."""
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]*-[\s:|-]*$", lines[i + 1]):
            body, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                body.append(j)
                j += 1
            yield i, body
            i = j
        else:
            i += 1


def table_report(lines: list[str], values: Values) -> list[tuple[int, int, int]]:
    """(header index, figures found, figures) per table."""
    out = []
    for header, body in tables(lines):
        figs = [f for j in body for f in figures_in_row(lines[j])]
        vals = values(lines, header) if callable(values) else values
        out.append((header, sum(is_found(f, vals) for f in figs), len(figs)))
    return out


def marker(found: int, total: int) -> str:
    return (f"{MARK_PREFIX}{found} of {total} figures in this table are in committed raw JSON; the others come "
            "from run outputs that were not kept.*")


def mark(text: str, values: Values) -> str:
    """``text`` with a fresh marker above every table that has a figure not found, and no other markers."""
    old = text.split("\n")
    lines = [ln for i, ln in enumerate(old) if not ln.startswith(MARK_PREFIX)
             and not (ln == "" and i > 0 and old[i - 1].startswith(MARK_PREFIX))]
    need = {h: (f, n) for h, f, n in table_report(lines, values) if f < n}
    out = []
    for i, ln in enumerate(lines):
        if i in need:
            out += [marker(*need[i]), ""]
        out.append(ln)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    for page in PAGES:
        values = committed_numbers(str(page.relative_to(ROOT)))
        text = page.read_text()
        if "--mark" in argv:
            new = mark(text, values)
            if new != text:
                page.write_text(new)
            text = new
        lines = text.split("\n")
        for header, found, total in table_report(lines, values):
            print(f"{page.relative_to(ROOT)}:{header + 1}: {found}/{total} figures in committed raw JSON")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
