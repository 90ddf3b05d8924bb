"""mypy over core/, plugins/, sdk/ and cli/, each file under its import name; exit 1 when it finds an error.

pyproject's package-dir maps the folders to ``mtbranch``, ``mtbranch.plugins``, ``mtbranch.sdk`` and ``mtbranch.cli``:
names mypy cannot derive from the paths (and the editable install's import hook is invisible to it), so each file
is handed to mypy as a build source with its module name. The settings are pyproject's ``[tool.mypy]``.

    .venv/bin/python .ci/typecheck.py          (make lint and make test run it)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "mtbranch", "plugins": "mtbranch.plugins", "sdk": "mtbranch.sdk", "cli": "mtbranch.cli"}


def sources() -> Iterator[BuildSource]:
    for folder, prefix in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            yield BuildSource(str(path.relative_to(ROOT)), ".".join([prefix, *parts]))


def main() -> int:
    start = time.perf_counter()
    # the options exactly as `mypy` builds them from pyproject.toml (the -c program is a placeholder target)
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "-c", "pass"])
    found = list(sources())
    try:
        errors = build.build(found, options).errors
    except CompileError as exc:  # a blocking error (syntax, a module found twice): mypy stops there
        errors = exc.messages
    for line in errors:
        print(line)
    took = time.perf_counter() - start
    files = len(found)
    if errors:
        print(f"mypy: {sum(': error:' in e for e in errors)} error(s) in {files} files ({took:.0f} s)")
        return 1
    print(f"mypy: no errors in {files} files ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
