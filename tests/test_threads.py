"""Issue 25: one thread rule for every command (docs/cli.md, Threads), `predict --threads` included."""

from __future__ import annotations

import pytest
import torch

from mtbranch.cli.main import cli
from mtbranch.cli.threads import THREADS_HELP, apply_threads, default_threads

COMMANDS = ("train", "sweep", "distill", "build", "serve", "predict", "bench")


@pytest.mark.parametrize(("env", "cpus", "want"), [
    ({}, 2, 1),                               # a shared 2-core machine: 1 thread, not torch's 2
    ({}, 1, 1),
    ({}, 16, 15),                             # one core left for tokenizing / the HTTP loop / other jobs
    ({"OMP_NUM_THREADS": "3"}, 16, 3),        # the variable torch reads wins over the rule
    ({"OMP_NUM_THREADS": "0"}, 4, 3),         # not a thread count: ignored
    ({"OMP_NUM_THREADS": "x"}, 4, 3),
])
def test_the_default_thread_rule(env: dict[str, str], cpus: int, want: int) -> None:
    assert default_threads(env, cpus) == want


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_threads_with_the_one_rule(name: str) -> None:
    options = {p.name: p for p in cli.commands[name].params}
    assert "threads" in options, f"mtbranch {name} has no --threads"
    assert options["threads"].help == THREADS_HELP and options["threads"].default is None


def test_apply_threads_sets_torch_by_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert apply_threads(None) == 2 == torch.get_num_threads()
        assert apply_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
