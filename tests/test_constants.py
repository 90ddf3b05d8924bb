"""Each table has one home; the modules that need it derive from that home instead of copying it."""

from __future__ import annotations

from mtbranch.cli.sdk_commands import TASK_CHOICES
from mtbranch.heads.registry import builtin_head_types
from mtbranch.sdk.tasks import get_task
from mtbranch.spec.heads import BUILTIN_HEAD_TYPES, is_bio_tag


def test_head_type_names_come_from_the_spec_models() -> None:
    assert BUILTIN_HEAD_TYPES == ("classification", "regression", "token_classification")
    assert tuple(h.name for h in builtin_head_types()) == BUILTIN_HEAD_TYPES
    assert [c.replace("-", "_") for c in TASK_CHOICES] == list(BUILTIN_HEAD_TYPES)
    # every built-in head type is a task: its training side is on its record, found by name
    assert [get_task(c).name for c in TASK_CHOICES] == list(BUILTIN_HEAD_TYPES)


def test_bio_tag_check() -> None:
    assert all(map(is_bio_tag, ["O", "B-PER", "I-LOC", "B-MISC-X"]))
    assert not any(map(is_bio_tag, ["", "B-", "I", "o", "E-PER", "PER"]))


def test_serving_defaults_have_one_home() -> None:

    from mtbranch.cli.serve import serve
    from mtbranch.serve.batching import Budget
    from mtbranch.serve.schema import ServeSettings

    d = ServeSettings()
    opts = {p.name: p.default for p in serve.params}
    assert (opts["max_batch_size"], opts["max_batch_wait_ms"], opts["max_queue"]) == (
        d.max_batch_size, d.max_batch_wait_ms, d.max_queue)
    assert (opts["max_body_bytes"], opts["max_texts"], opts["max_chars"]) == (
        d.limits.max_body_bytes, d.limits.max_texts, d.limits.max_chars)
    assert (Budget().max_batch_size, Budget().max_batch_tokens) == (d.max_batch_size, d.max_batch_tokens)
    assert opts["max_padding"] == d.max_padding == Budget().max_padding  # length buckets: one default
