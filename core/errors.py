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
