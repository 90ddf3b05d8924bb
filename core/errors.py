"""Errors that carry a user-facing message.

The CLI turns an :class:`MtbranchError` into a one-paragraph message and exit code 1 (or 2 for usage),
never a traceback. Messages name the file, the field and the fix.
"""

from __future__ import annotations


class MtbranchError(Exception):
    """A problem the user can fix: bad input, a mismatch, a missing file."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.path = path
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(MtbranchError):
    """Wrong arguments or options (exit code 2, as click uses)."""

    exit_code = 2


class IntegrityError(MtbranchError):
    """A file does not match the hash recorded for it."""


class ValidationFailed(MtbranchError):
    """Validation found errors; carries the report so callers can show every finding."""

    def __init__(self, report: object) -> None:
        self.report = report
        errors = [f for f in getattr(report, "findings", []) if f.severity == "error"]
        lines = [f"{f.code} {f.branch or '-'}: {f.message}" for f in errors[:10]]
        super().__init__(
            "validation failed with {} error(s):\n  {}".format(len(errors), "\n  ".join(lines)),
            hint="run `mtbranch validate` with the same branches for the full report",
        )


# optional extras: what `pip install 'mtbranch[extra]'` brings, by import name (pyproject's optional-dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("accelerate", "sklearn", "scipy", "seqeval"),
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
    "ray": ("ray", "fastapi"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "bench": ("matplotlib",),
}


class MissingExtra(MtbranchError):
    """An optional dependency group is not installed; the hint is the exact pip line."""

    def __init__(self, extra: str, missing: list[str], what: str | None = None) -> None:
        self.extra = extra
        self.missing = missing
        self.install = f"pip install 'mtbranch[{extra}]'"
        needs = f"{what} needs" if what else "this needs"
        super().__init__(f"{needs} the optional extra [{extra}]: {', '.join(missing)} not installed",
                         hint=self.install)


def require_extra(extra: str, what: str | None = None) -> None:
    """Raise :class:`MissingExtra` (exit 1) unless every module of ``extra`` is importable. Cheap: looks the
    modules up without importing them, so commands call it before any expensive work."""
    import importlib.util

    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise MissingExtra(extra, missing, what)
