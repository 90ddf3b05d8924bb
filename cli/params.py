"""Option types every numeric CLI option uses: finite numbers in a stated range, and a device this torch has.

click's ``float`` and ``FloatRange`` accept ``nan`` and ``inf`` (every comparison with NaN is false), so a
learning rate of ``nan`` or a ``--grace inf`` used to start work. A value outside the range is a usage error
(exit 2, as click's own), raised while the options are parsed: before anything is read or written.
tests/test_numeric_options.py enumerates every numeric option of every command and feeds it ``nan`` and ``inf``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click


class Finite(click.FloatRange):
    """A finite float, optionally bounded: ``Finite(0, min_open=True)`` is a positive finite number."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


# a learning rate above 1 is a typo for AdamW (and makes the weights overflow within a few steps)
LEARNING_RATE = Finite(0, 1, min_open=True)
FRACTION = Finite(0, 1)  # inclusive: warm-up 0 .. 1
OPEN_FRACTION = Finite(0, 1, min_open=True, max_open=True)  # a dev split: neither nothing nor everything
EPOCHS = Finite(0, 10_000, min_open=True)
SECONDS = Finite(0, 86_400)  # a day at most: a longer wait is a typo, not a plan
POSITIVE_SECONDS = Finite(0, 86_400, min_open=True)
# integers: click's IntRange already refuses ``nan``/``inf`` (not integers); these add the bounds
THREADS = click.IntRange(1, 4096)
SEED = click.IntRange(0, 2**32 - 1)  # numpy's seed range
LAYERS = click.IntRange(0, 1024)
TOKENS = click.IntRange(1, 1_000_000)  # a tokenizer max_length


class Device(click.ParamType):
    """``cpu``, ``cuda``, ``cuda:1``, ``mps``...: the spelling is checked here; whether this machine has the device
    is checked at the start of the command (:func:`mtbranch.spec.precision.check_device`), so documented
    commands still parse on a machine without it."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or not _DEVICE.match(value):
            self.fail(f"{value!r} is not a device: cpu, cuda, cuda:N or mps", param, ctx)
        return value


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu)(:\d{1,3})?$")
DEVICE = Device()


def backend_options(f: Any) -> Any:
    """``--backend`` and ``--dtype`` (predict, serve): default auto, the engine and dtype measured fastest here."""
    from mtbranch.backends import BACKEND_HELP, BACKENDS, DEFAULT_BACKEND
    from mtbranch.spec.precision import DTYPE_HELP, DTYPE_SPELLINGS

    # default None: load's default, auto unless $MTBRANCH_DTYPE / $MTBRANCH_BACKEND set another for the fleet
    f = click.option("--dtype", type=click.Choice(DTYPE_SPELLINGS), default=None, show_default="auto",
                     help=DTYPE_HELP + " With --backend auto, auto also weighs ONNX Runtime float32 (measured); "
                                       "the reference: --backend torch --dtype float32.")(f)
    return click.option("--backend", type=click.Choice(BACKENDS), default=None, show_default=DEFAULT_BACKEND,
                        help=BACKEND_HELP)(f)


class TagName(click.ParamType):
    """A manifest tag (``--tag safety``): a name as the manifest's ``tags`` field takes it. A bad one is a user
    error naming the field and the fix (exit 1, :class:`~mtbranch.errors.MtbranchError`), before any work starts."""

    name = "tag"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from mtbranch.errors import MtbranchError
        from mtbranch.spec.manifest import NAME_RE

        if not isinstance(value, str) or not NAME_RE.match(value):
            raise MtbranchError(f"--tag {value!r} is not a valid tag for the manifest field 'tags'",
                                hint="a tag is lowercase letters, digits, '-' and '_', starting with a letter or "
                                     "digit, at most 64 characters: e.g. --tag safety")
        return value


TAG = TagName()


def unique_tags(ctx: click.Context | None, param: click.Parameter | None, tags: tuple[str, ...]) -> list[str]:
    """The callback of a repeatable ``--tag`` (type :data:`TAG`): the manifest's list; a tag given twice is refused
    while the options are parsed (the field's tags are unique)."""
    from mtbranch.errors import MtbranchError

    seen: set[str] = set()
    for tag in tags:
        if tag in seen:
            raise MtbranchError(f"--tag {tag!r} is given twice (the manifest field 'tags' holds each tag once)",
                                hint="give each --tag once")
        seen.add(tag)
    return list(tags)


def dev_file_options(f: Any) -> Any:
    """How ``--dev NAME=PATH`` files are read (migrate, quantize): the columns, header, quoting and label names."""
    for option in reversed([
        click.option("--dev-text-col", default="0", show_default=True),
        click.option("--dev-pair-col", default=None),
        click.option("--dev-label-col", default="1", show_default=True),
        click.option("--dev-no-header", is_flag=True),
        click.option("--dev-quote-none", is_flag=True),
        click.option("--dev-label-names", default=None, help="Branch label names for the dev file's sorted labels."),
    ]):
        f = option(f)
    return f
