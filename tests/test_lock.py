"""The lock file as a model (mtbranch.spec.lock): locks written before it read and write back byte for byte, a
hand-edited field is refused naming the file, the field and the fix; the provenance compose and load record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mtbranch.branch.model import BranchProvenance
from mtbranch.composition.artifact import compose, load, save_composed
from mtbranch.composition.model import ComposedModel
from mtbranch.errors import IntegrityError, MtbranchError
from mtbranch.spec import lock as lock_mod
from mtbranch.spec.lock import LOCK_NAME, parse_lock, read_lock
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

# what `save_composed` wrote before the lock was a model (a dict, json.dumps(lock, indent=2) + "\n")
OLD_LOCK: dict[str, Any] = {
    "lock_version": 1,
    "mtbranch_version": "0.1.0",
    "created": "2026-12-01T10:00:00+00:00",
    "trunk": {"reference": "minilm-l6", "num_layers": 6, "kept_layers": 2, "model_type": "bert",
              "fingerprints": ["a" * 64, "b" * 64, "c" * 64]},
    "branches": [{"name": "sentiment", "version": "0.1.0", "source": "mtbranch-sentiment", "attach_depth": 2,
                  "num_layers": 1, "head": "classification", "sha256": "d" * 64}],
    "overhead": {"shared_layers": 2, "task_layers": 1, "total_layers": 3, "single_task_layers": 6, "ratio": 0.5,
                 "text": "2 + 1 = 3 of 6, 50.0%"},
    "files": {"branches/sentiment/branch.safetensors": "d" * 64, "trunk/config.json": "e" * 64},
}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    (tmp_path / LOCK_NAME).write_text(json.dumps(data, indent=2) + "\n")
    return tmp_path


def test_an_older_lock_reads_and_writes_back_byte_for_byte(tmp_path: Path) -> None:
    text = (write(tmp_path, OLD_LOCK) / LOCK_NAME).read_text()
    lock = read_lock(tmp_path)
    assert lock.to_json() == text
    assert lock.branch("sentiment").source == "mtbranch-sentiment" and lock.inconsistencies() == []


@pytest.mark.parametrize(("edit", "field"), [
    (lambda d: d["branches"][0].__setitem__("attach_depth", "deep"), "branches[0].attach_depth"),
    (lambda d: d["branches"][0].__setitem__("num_layers", True), "branches[0].num_layers"),  # strict: no bools
    (lambda d: d["branches"][0].__setitem__("name", "../../elsewhere"), "branches[0].name"),
    (lambda d: d["trunk"].pop("model_type"), "trunk.model_type"),
    (lambda d: d["files"].__setitem__("trunk/x", 3), "files.trunk/x"),
    (lambda d: d.__setitem__("overhead", "-"), "overhead"),
    (lambda d: d["trunk"]["fingerprints"].append(None), "trunk.fingerprints[3]"),
])
def test_a_wrong_field_names_the_file_the_field_and_the_fix(edit: Any, field: str, tmp_path: Path) -> None:
    data = copy.deepcopy(OLD_LOCK)
    edit(data)
    with pytest.raises(IntegrityError) as info:
        read_lock(write(tmp_path, data))
    assert info.value.message.startswith(f"lock file field {field}:"), info.value.message
    assert info.value.path == str(tmp_path / LOCK_NAME) and "compose again" in (info.value.hint or "")


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_a_lock_version_this_mtbranch_does_not_read_is_refused(version: Any, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=rf"lock_version {version!r}: this mtbranch reads version 1"):
        read_lock(write(tmp_path, {**OLD_LOCK, "lock_version": version}))


def test_an_older_version_is_converted_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_0(d: dict[str, Any]) -> dict[str, Any]:  # a made-up version 0 that named the file list `hashes`
        d = {**d, "lock_version": 1, "files": d["hashes"]}
        del d["hashes"]
        return d

    monkeypatch.setitem(lock_mod.CONVERTERS, 0, from_0)
    old = {**{k: v for k, v in OLD_LOCK.items() if k != "files"}, "lock_version": 0, "hashes": OLD_LOCK["files"]}
    assert parse_lock(old).files == OLD_LOCK["files"]


def test_the_lock_checks_itself() -> None:
    data = copy.deepcopy(OLD_LOCK)
    data["branches"].append(dict(data["branches"][0]))
    data["trunk"]["kept_layers"] = 7
    assert parse_lock(data).inconsistencies() == [
        "branches: 'sentiment' is listed 2 times",
        "trunk: 3 fingerprints recorded for 7 kept layers (want 8)",
        "trunk: kept_layers 7 exceeds the trunk's num_layers 6",
        "overhead: lock says '2 + 1 = 3 of 6, 50.0%', its branches make '2 + 2 = 4 of 12, 33.3%'",
    ]


def test_compose_and_load_record_the_provenance(tiny_bert_dir: Path, tmp_path: Path) -> None:
    b = make_branch(tiny_bert_dir, tmp_path / "sentiment", name="sentiment", depth=2, layers=1, seed=1)
    trunk = load_trunk_source(tiny_bert_dir)
    model = compose(trunk, [(b, "acme-plugin")])
    assert model.provenance.trunk_source is trunk and model.provenance.artifact_root is None and model.lock is None
    assert model.branches[0].provenance == BranchProvenance("acme-plugin", b)
    lock = save_composed(model, tmp_path / "c")
    assert (tmp_path / "c" / LOCK_NAME).read_text() == lock.to_json()
    loaded = load(tmp_path / "c")
    assert loaded.provenance.artifact_root == tmp_path / "c" and loaded.lock == lock
    assert loaded.branches[0].provenance == BranchProvenance("acme-plugin", tmp_path / "c" / "branches" / "sentiment")


def test_a_hand_built_model_is_refused_by_save_with_a_hint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """It used to be an AttributeError (no `trunk_source` attribute): an internal error, exit 2."""
    loaded = load(_composed(tiny_bert_dir, tmp_path))
    model = ComposedModel(loaded.trunk, list(loaded.branches), loaded.tokenizer)
    with pytest.raises(MtbranchError, match="records no trunk directory") as info:
        save_composed(model, tmp_path / "out")
    assert info.value.hint and not (tmp_path / "out").exists()


def _composed(trunk_dir: Path, tmp_path: Path) -> Path:
    b = make_branch(trunk_dir, tmp_path / "sentiment", name="sentiment", depth=2, layers=1, seed=1)
    save_composed(compose(load_trunk_source(trunk_dir), [(b, "directory")]), tmp_path / "c")
    return tmp_path / "c"
