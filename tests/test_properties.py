"""Property-based tests: validation never raises on any manifest or safetensors file; every rejection is a
finding with a documented code (or, for the header reader alone, a HeaderError with a reason)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtbranch.io.files import sha256_file
from mtbranch.io.safetensors_header import DTYPE_SIZES, HeaderError, read_header
from mtbranch.plugins.manager import PluginManager
from mtbranch.spec.findings import CODES
from mtbranch.trunk.source import load_trunk_source
from mtbranch.validation.validator import CHECKS, Validator

from helpers import make_branch

SETTINGS = settings(max_examples=500, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


class Setup:
    def __init__(self, base: Path, trunk: Path) -> None:
        self.good = make_branch(trunk, base / "good", name="sentiment", depth=2, layers=1)
        self.manifest = json.loads((self.good / "manifest.json").read_text())
        self.validator = Validator(load_trunk_source(trunk), plugin_manager=PluginManager(autoload=False))
        self.work = base / "work"
        shutil.copytree(self.good, self.work)
        # the manifest is mutated here: its model card would disagree (W011, tests/test_cards.py), not the subject
        (self.work / "README.md").unlink()

    def reset(self) -> None:
        for name in ("manifest.json", "branch.safetensors"):
            shutil.copy(self.good / name, self.work / name)

    def check(self) -> None:
        """Validate the work directory: no exception, and findings that explain every failed check."""
        res, findings = self.validator.check_branch(self.work)
        assert all(f.code in CODES and f.message and f.severity == CODES[f.code][0] for f in findings), findings
        failed = [c for c in CHECKS if res.checks[c] == "failed"]
        errors = [f for f in findings if f.severity == "error"]
        assert bool(failed) == bool(errors), (res.checks, findings)
        event(f"first failed check: {failed[0] if failed else 'none'}")
        if res.manifest is None:  # not even parsed: the manifest check says why
            assert res.checks["manifest"] == "failed" and {f.code[0] for f in errors} == {"M"}


@pytest.fixture(scope="module")
def setup(tiny_bert_dir: Path) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="mtbranch-props-") as tmp:
        yield Setup(Path(tmp), tiny_bert_dir)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_manifest(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The good manifest with 1-4 fields replaced, deleted or added (with any JSON value)."""
    data = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths)) if paths else ()
        parent: Any = data
        for key in path[:-1]:
            parent = parent[key]
        if not path:  # everything was deleted
            break
        op = draw(st.sampled_from(["set", "delete", "add"]))
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON)
        else:  # half the time a value of the same type, so later checks (weights, trunk...) are reached too
            parent[key] = draw(JSON | _like(parent[key]))
    return data


def _like(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-2, 70) | st.sampled_from([2**31, 10**9, 2**64])
    if isinstance(value, float):
        return st.floats(allow_nan=False)
    if isinstance(value, str):
        return st.sampled_from(["2.0", "0.9", "1.0", "-1", "", "../x", "/etc/passwd", "float16", "bfloat16",
                                "F32", "classification", "token_classification", "mean", "attention", "0" * 64,
                                value[:-1], value + "x"])
    if isinstance(value, list):
        return st.lists(st.sampled_from(value) if value else JSON, max_size=len(value) + 2)
    return JSON


@SETTINGS
@given(data=st.data())
def test_mutated_manifests_give_findings_never_exceptions(setup: Setup, data: st.DataObject) -> None:
    setup.reset()
    manifest = data.draw(mutated_manifest(setup.manifest))
    (setup.work / "manifest.json").write_text(json.dumps(manifest))
    setup.check()


@SETTINGS
@given(raw=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_manifest_bytes(setup: Setup, raw: bytes) -> None:
    setup.reset()
    (setup.work / "manifest.json").write_bytes(raw)
    setup.check()


# -- safetensors headers --------------------------------------------------------------------------------------
DTYPES = sorted(DTYPE_SIZES)
ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(DTYPES) | JSON,
        "shape": st.lists(st.integers(-2, 6), max_size=3) | JSON,
        "data_offsets": st.lists(st.integers(-4, 300), min_size=2, max_size=2) | JSON,
    },
    optional={"extra": JSON},
)
HEADER = st.dictionaries(st.text(max_size=12), ENTRY | JSON, max_size=4) | st.builds(
    lambda d, m: {**d, "__metadata__": m}, st.dictionaries(st.text(max_size=6), ENTRY, max_size=3), JSON)


@st.composite
def safetensors_file(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["header", "header", "raw", "length"]))
    if kind == "raw":  # any bytes at all
        return draw(st.binary(max_size=400))
    header = json.dumps(draw(HEADER)).encode()
    data = draw(st.binary(max_size=300))
    length = len(header) if kind == "header" else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + header + data


def _consistent(header: Any, size: int) -> None:
    """What an accepted header guarantees to the code that memory-maps the data."""
    spans = []
    for t in header.tensors.values():
        assert header.data_start <= t.start <= t.end <= size
        assert t.nbytes == math.prod(t.shape) * DTYPE_SIZES[t.dtype]
        spans.append((t.start, t.end))
    spans.sort()
    assert all(b1 >= e0 for (_s0, e0), (b1, _e1) in itertools.pairwise(spans))


@st.composite
def coherent_file(draw: st.DrawFn) -> bytes:
    """Headers whose offsets follow dtype x shape, with an occasional off-by-some: most are accepted."""
    tensors, pos = {}, 0
    for i in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        n = math.prod(shape) * DTYPE_SIZES[dtype]
        begin = pos + draw(st.sampled_from([0, 0, 0, 0, 1, -1, -n]))
        end = begin + n + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        tensors[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        pos = max(pos, end)
    header = json.dumps(tensors).encode()
    data = draw(st.binary(min_size=max(0, pos - 1), max_size=max(0, pos) + 2))
    return struct.pack("<Q", len(header)) + header + data


@st.composite
def mutated_real_file(draw: st.DrawFn, good: bytes) -> bytes:
    """The good branch file with its header fields mutated and/or data bytes changed (NaN/Inf bit patterns)."""
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + n])
    if draw(st.booleans()):
        header = draw(mutated_manifest(header))
    data = bytearray(good[8 + n:])
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, max(0, len(data) - 4)))
        data[i:i + 4] = draw(st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\xff\xff"]))
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


@SETTINGS
@given(data=st.data())
def test_safetensors_headers_are_accepted_consistently_or_refused_with_a_reason(setup: Setup,
                                                                                data: st.DataObject) -> None:
    good = (setup.good / "branch.safetensors").read_bytes()
    blob = data.draw(safetensors_file() | coherent_file() | mutated_real_file(good))
    weights = setup.work / "branch.safetensors"
    weights.write_bytes(blob)
    try:
        header = read_header(weights)
    except HeaderError as exc:
        assert exc.message and exc.path == str(weights)
        event("header refused")
    else:
        _consistent(header, len(blob))
        event(f"header accepted ({'with' if header.tensors else 'no'} tensors)")
    # through validation: the good manifest, re-pointed at this file's hash, gives W-findings only
    manifest = dict(setup.manifest, weights=dict(setup.manifest["weights"], sha256=sha256_file(weights)))
    (setup.work / "manifest.json").write_text(json.dumps(manifest))
    res, findings = setup.validator.check_branch(setup.work)
    errors = [f for f in findings if f.severity == "error"]
    assert (res.checks["weights"] == "failed") == bool(errors)
    assert all(f.code == "W010" for f in findings if f.severity != "error"), findings  # a huge finite weight
    assert all(f.code in CODES and f.code.startswith("W") for f in findings), findings
