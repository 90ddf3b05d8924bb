"""Every figure on docs/results.md and docs/benchmarks.md is found in committed raw JSON, or its table says how
many are (a computed marker, so it cannot go stale). The definitions live in docs/scripts/figures.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "scripts" / "figures.py")
assert _spec is not None and _spec.loader is not None
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def test_what_counts_as_a_figure() -> None:
    row = "| sentiment | `--lr 3e-4 --epochs 2` | 89.45 | 98.5% | 3.70x | 12x | -0.80 | 8.6e-6 | 2 layers | 33 |"
    assert figures.figures_in_row(row) == ["89.45", "98.5", "3.70", "12", "0.80", "8.6e-6"]
    assert figures.figures_in_row("| 0.64-0.71 s (**0.48-0.65x**) |") == ["0.64", "0.71", "0.48", "0.65"]


def test_found_means_equal_at_the_figure_precision() -> None:
    assert figures.is_found("88.07", [0.880734])  # a fraction shown as a percentage
    assert figures.is_found("3.70", [3.7012]) and figures.is_found("8.6e-6", [8.63e-6])
    assert not figures.is_found("88.08", [0.880734]) and not figures.is_found("3.69", [3.7012])


@pytest.mark.parametrize("page", list(figures.SOURCES))
def test_every_figure_is_in_committed_json_or_its_table_says_so(page: str) -> None:
    text = (ROOT / page).read_text()
    values = figures.committed_numbers(page)
    report = figures.table_report(text.split("\n"), values)
    assert sum(total for _, _, total in report) > 20, "the page lost its tables?"
    # the page equals its marked form: a table whose figures are all found has no marker, every other table
    # has the marker with the current counts (run `python docs/scripts/figures.py --mark` after adding JSON)
    assert figures.mark(text, values) == text, f"{page}: markers are missing or stale"


def test_shipped_branch_metrics_are_traceable_to_their_manifests() -> None:
    # the shipped rows quote the dev metrics the training runs wrote into the committed manifests
    values = figures.committed_numbers("docs/results.md")
    for figure in ("88.07", "85.24", "88.23"):  # SST-2, STS-B, CoNLL shipped (docs/results.md targets table)
        assert figures.is_found(figure, values), figure
