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
    "ray": ("ray", "fastapi", "pandas", "pyarrow"),  # Ray Serve and Ray Data
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "openvino": ("openvino",),
    "bench": ("matplotlib",),
    "mlflow": ("mlflow", "pandas"),
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http", "opentelemetry.instrumentation.fastapi"),
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


class FileAccessError(MtbranchError, OSError):
    """The system refused a file operation (permission denied, disk full, read-only file system...).

    Also an :class:`OSError`, so code that tolerates OS errors (a read-only cache) still does.
    """

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None,
                 errno: int | None = None) -> None:
        super().__init__(message, hint=hint, path=path)
        self.errno = errno


_OS_HINTS = {
    "ENOSPC": "the disk is full: free space or write elsewhere; nothing was replaced",
    "EDQUOT": "the disk quota is used up: free space or write elsewhere; nothing was replaced",
    "EROFS": "the file system is read-only: choose a writable location",
    "EACCES": "permission denied: run as a user allowed to access it, or change its owner/mode (chmod/chown)",
    "EPERM": "operation not permitted: run as a user allowed to access it, or change its owner/mode",
    "ENOENT": "the file or directory does not exist",
    "EISDIR": "a directory is where a file was expected",
    "ENOTDIR": "a file is where a directory was expected",
}


def os_error(exc: OSError, action: str, path: str | None = None) -> MtbranchError:
    """An :class:`OSError` as a user-facing error: the path, what was being done, the cause and a fix."""
    import errno as errno_mod

    if isinstance(exc, MtbranchError):
        return exc
    name = errno_mod.errorcode.get(exc.errno or -1, "")
    cause = exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else path
    hint = getattr(exc, "hint", None) or _OS_HINTS.get(name)  # an OSError of mtbranch's own may carry one
    return FileAccessError(f"{action}: {cause}" + (f" ({name})" if name else ""),
                           path=None if where is None else str(where), hint=hint, errno=exc.errno)


def user_error(exc: BaseException, action: str = "file operation failed") -> MtbranchError | None:
    """The user-facing error the CLI prints for ``exc`` (the server's reload answers with the same), or None
    for a bug (anything that is neither an :class:`MtbranchError` nor an :class:`OSError`)."""
    if isinstance(exc, MtbranchError):
        return exc
    if isinstance(exc, OSError):
        return os_error(exc, action)
    return None
