"""Every figure in a table of docs/results.md and docs/benchmarks.md is found in committed raw JSON, and both pages
are generated from that JSON (docs/scripts/gen_results.py, docs/scripts/bench_tables.py). The definitions of a
figure and of "found" live in docs/scripts/figures.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


figures = load_script("figures")


def test_what_counts_as_a_figure() -> None:
    row = "| sentiment | `--lr 3e-4 --epochs 2` | 89.45 | 98.5% | 3.70x | 12x | -0.80 | 8.6e-6 | 2 layers | 33 |"
    assert figures.figures_in_row(row) == ["89.45", "98.5", "3.70", "12", "0.80", "8.6e-6"]
    assert figures.figures_in_row("| 0.64-0.71 s (**0.48-0.65x**) |") == ["0.64", "0.71", "0.48", "0.65"]


def test_found_means_equal_at_the_figure_precision() -> None:
    assert figures.is_found("88.07", [0.880734])  # a fraction shown as a percentage
    assert figures.is_found("3.70", [3.7012]) and figures.is_found("8.6e-6", [8.63e-6])
    assert not figures.is_found("88.08", [0.880734]) and not figures.is_found("3.69", [3.7012])


@pytest.mark.parametrize("page", list(figures.SOURCES))
def test_every_table_figure_is_in_committed_json(page: str) -> None:
    text = (ROOT / page).read_text()
    values = figures.committed_numbers(page)
    lines = text.split("\n")
    report = figures.table_report(lines, values)
    assert sum(total for _, _, total in report) > 20, "the page lost its tables?"
    missing = [f"{page}:{header + 1}: {found} of {total} figures found" for header, found, total in report
               if found < total]
    assert not missing, "figures not in the committed raw JSON named for them:\n" + "\n".join(missing)
    assert not any(ln.startswith(figures.MARK_PREFIX) for ln in lines), f"{page} still carries a marker"


def test_a_figure_missing_from_the_json_fails() -> None:
    page = "docs/benchmarks.md"
    lines = (ROOT / page).read_text().split("\n")
    header, body = next(figures.tables(lines))
    row = body[0]
    lines[row] = lines[row].rstrip("|") + " 12345.678 |"  # a figure no JSON holds
    report = figures.table_report(lines, figures.committed_numbers(page))
    assert any(found < total for h, found, total in report if h == header)


def test_benchmarks_page_equals_its_generated_form() -> None:
    bench_tables = load_script("bench_tables")
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count("<!-- generated: ") >= 8
    assert bench_tables.render(text) == text, "run: python docs/scripts/bench_tables.py"


def test_results_page_equals_its_generated_form() -> None:
    gen_results = load_script("gen_results")
    assert gen_results.page() == (ROOT / "docs" / "results.md").read_text(), (
        "run: python docs/scripts/gen_results.py > docs/results.md")


def test_shipped_branch_metrics_are_traceable_to_their_manifests() -> None:
    # the shipped rows quote the dev metrics the training runs wrote into the committed manifests
    values = figures.committed_numbers("docs/results.md")
    for figure in ("88.07", "85.24", "88.31"):  # SST-2, STS-B, CoNLL: docs/results.md, the shipped branches
        assert figures.is_found(figure, values), figure
