"""The one thread rule every command shares (``--threads``; docs/cli.md "Threads").

``--threads N`` wins; else ``OMP_NUM_THREADS`` when set (the variable torch itself reads); else every CPU this
process may use but one, at least 1. torch's own default takes every core: on a shared 2-core machine a team
measured that 1.9x slower than 1 thread (the threads wait on each other and on the machine's other jobs), and
leaving one core free costs little on a larger machine while the tokenizer and the HTTP loop keep one to run on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import click

THREADS_HELP = ("torch CPU threads [default: $OMP_NUM_THREADS when set, else the usable CPUs but one, at least 1: "
                "docs/cli.md, Threads].")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """The rule without ``--threads``."""
    env = os.environ if env is None else env
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    return max(1, (usable_cpus() if cpus is None else cpus) - 1)


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads by the rule; returns the count (commands report it)."""
    import torch

    n = threads if threads else default_threads()
    torch.set_num_threads(n)
    return n


def threads_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--threads", type=click.IntRange(1, 4096), default=None, metavar="N", help=THREADS_HELP)(f)
