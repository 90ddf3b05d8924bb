"""Writers killed mid-write (SIGKILL in a subprocess): the previous version stays intact, no partial output.

Compose has its own test (tests/test_compose.py::test_interrupted_compose_leaves_old_artifact); here the
branch export of ``mtbranch train`` and the SDK feature cache. The subprocess writes half of the first file
it opens under a ``.tmp-`` name, says so, and waits to be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from sdk_fixtures import sdk_trunk_dir, write_sentiment  # noqa: F401 (sdk_trunk_dir is a fixture)

from mtbranch.branch.model import load_branch
from mtbranch.sdk.features import Encoded, FeatureCache, compute_features
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

TESTS = Path(__file__).resolve().parent

# Run first by the killed process: the first write to a path containing ``marker`` stops half-way.
STALL = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    _real_fdopen = os.fdopen

    class _HalfWriter:
        def __init__(self, fh):
            self.fh = fh
        def write(self, data):
            self.fh.write(data[: len(data) // 2]); self.fh.flush()
            print("WRITING", flush=True); time.sleep(120)
        def __getattr__(self, name):
            return getattr(self.fh, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    def _fdopen(fd, *args, **kwargs):
        fh = _real_fdopen(fd, *args, **kwargs)
        return _HalfWriter(fh) if {marker!r} in os.readlink(f"/proc/self/fd/{{fd}}") else fh

    os.fdopen = _fdopen

    import builtins, io
    _real_open = io.open

    def _open(file, mode="r", *args, **kwargs):
        fh = _real_open(file, mode, *args, **kwargs)
        return _HalfWriter(fh) if "w" in mode and {marker!r} in str(file) else fh

    builtins.open = io.open = _open  # pathlib's write_bytes/write_text go through io.open
""")


def run_and_kill(body: str, marker: str) -> str:
    """Run ``body`` after STALL in a subprocess; SIGKILL it once it is half-way through writing ``marker``."""
    script = STALL.format(tests=str(TESTS), marker=marker) + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None
    seen = []
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "WRITING" in line or not line:
            break
    proc.send_signal(signal.SIGKILL)
    _out, err = proc.communicate()
    assert "WRITING" in "".join(seen), f"the writer never started writing:\n{err[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    return err


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
def test_killed_train_export_leaves_the_previous_branch(sdk_trunk_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "branches" / "sentiment"
    make_branch(sdk_trunk_dir, out, name="sentiment", depth=3, layers=1, seed=7)  # the previous version
    before = snapshot(out)
    train, dev = write_sentiment(tmp_path / "train.tsv", 48, 1), write_sentiment(tmp_path / "dev.tsv", 16, 2)
    args = ["train", "--trunk", str(sdk_trunk_dir), "--task", "classification", "--train", str(train), "--dev",
            str(dev), "--text-col", "sentence", "--label-col", "label", "--label-names", "negative,positive",
            "--layers", "2", "--name", "sentiment", "--epochs", "1", "--batch-size", "16", "--max-length", "32",
            "--no-progress", "-o", str(out)]
    run_and_kill(f"""
        from mtbranch.cli.main import cli
        cli({args!r}, prog_name="mtbranch")
    """, marker=".sentiment.tmp-")
    assert snapshot(out) == before  # byte for byte
    assert visible(out.parent) == ["sentiment"]  # no partial artifact next to it
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".sentiment.tmp-")]
    assert leftovers  # the killed export did get as far as writing (into its temporary sibling)
    assert load_branch(out).manifest.attach_depth == 3  # still the previous version, sha256 verified
    # the next export replaces it completely and removes the killed writer's leftovers
    make_branch(sdk_trunk_dir, out, name="sentiment", depth=2, layers=2, seed=8)
    assert sorted(p.name for p in out.parent.iterdir()) == ["sentiment"]
    assert load_branch(out).manifest.attach_depth == 2


def test_killed_feature_cache_write_leaves_no_partial_entry(sdk_trunk_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    cache_dir = tmp_path / "cache"
    source = load_trunk_source(sdk_trunk_dir)
    first = Encoded([[2, 5, 6, 3], [2, 7, 3]], [[0] * 4, [0] * 3], [0, 1])
    second = Encoded([[2, 8, 9, 10, 3], [2, 11, 3]], [[0] * 5, [0] * 3], [1, 0])
    FeatureCache(cache_dir).get(source, first, [1])
    before = snapshot(cache_dir)
    run_and_kill(f"""
        from mtbranch.sdk.features import Encoded, FeatureCache
        from mtbranch.trunk.source import load_trunk_source
        enc = Encoded({second.input_ids!r}, {second.token_type_ids!r}, {second.labels!r})
        FeatureCache({str(cache_dir)!r}).get(load_trunk_source({str(sdk_trunk_dir)!r}), enc, [2])
    """, marker=f"{cache_dir}/.")
    now = snapshot(cache_dir)
    assert {k: v for k, v in now.items() if not k.startswith(".")} == before  # the earlier entry intact
    partial = [p for p in cache_dir.iterdir() if ".tmp-" in p.name]
    assert len(partial) == 1 and partial[0].name.startswith(".")  # never under an entry's name
    # the entry is recomputed (the partial file is never read) and equals a fresh computation
    got = FeatureCache(cache_dir).get(source, second, [2])[2]
    want = compute_features(source, second, [2])[2]
    assert torch.equal(got.values, want.values) and torch.equal(got.offsets, want.offsets)
    key = FeatureCache.key(source, second.digest(), 2, "none")
    assert (cache_dir / f"{key}.safetensors").is_file()
    # the leftover's name carries its writer's pid, which is gone: writing that entry removed it
    # (a live writer's temporary is never removed: tests/test_artifact_trust.py)
    assert not partial[0].exists()

