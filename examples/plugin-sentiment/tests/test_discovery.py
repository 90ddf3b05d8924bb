"""The installed ``mtbranch-sentiment`` plugin is discovered, imports no torch, and its branch validates."""

from __future__ import annotations

from mtbranch.sdk import plugin_testing as testing

BRANCH = "sentiment"
PLUGIN = "mtbranch-sentiment"


def test_plugin_is_discovered() -> None:
    testing.assert_branch_discovered(BRANCH, plugin=PLUGIN)


def test_import_does_not_import_torch() -> None:
    testing.assert_import_is_light("mtbranch_sentiment")


def test_branch_validates() -> None:
    # against the example trunk when it is installed (or MTBRANCH_TEST_TRUNK)
    m = testing.assert_branch_validates(BRANCH, head="classification", signature="single", fallback_trunk="minilm-l6")
    assert m.metrics, "the example branches record their evaluation metrics"
