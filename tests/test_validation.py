"""Every validation check, triggered by a crafted bad artifact: code, severity and CLI exit code."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from mtbranch.cli.main import cli
from mtbranch.io.files import sha256_file

from conftest import make_bert_dir
from helpers import make_branch


@pytest.fixture(scope="module")
def good_branch(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_branch(tiny_bert_dir, tmp_path_factory.mktemp("good") / "sentiment", name="sentiment", depth=2,
                       layers=2)


@pytest.fixture(scope="module")
def other_trunks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trunks")
    return {"reseeded": make_bert_dir(base / "reseeded", seed=5),
            "wider": make_bert_dir(base / "wider", hidden=48)}


def edit_manifest(d: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    p = d / "manifest.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def run_validate(trunk: Path | None, *branches: Path, strict: bool = False) -> tuple[int, dict[str, Any]]:
    args = ["validate", "--no-plugins", "--format", "json"]
    if trunk is not None:
        args += ["--trunk", str(trunk)]
    for b in branches:
        args += ["--branch", str(b)]
    if strict:
        args.append("--strict")
    r = CliRunner().invoke(cli, args)
    assert "Traceback" not in r.output
    return r.exit_code, json.loads(r.stdout)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[last] = value
    return fn


def _flip_data_byte(d: Path) -> None:
    p = d / "branch.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))


def _truncate(d: Path) -> None:
    p = d / "branch.safetensors"
    p.write_bytes(p.read_bytes()[:200])


def _nan(d: Path) -> None:
    p = d / "branch.safetensors"
    state = load_file(str(p))
    state["head.classifier.bias"][0] = float("nan")
    save_file(state, str(p), metadata={"format": "pt"})
    edit_manifest(d, _set("weights.sha256", sha256_file(p)))


def _bad_json(d: Path) -> None:
    (d / "manifest.json").write_text("{ not json")


def _no_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def _no_weights(d: Path) -> None:
    (d / "branch.safetensors").unlink()


def _escape(d: Path) -> None:
    shutil.copy(d / "branch.safetensors", d.parent / "outside.safetensors")
    edit_manifest(d, _set("weights.path", "../outside.safetensors"))


def _symlink_escape(d: Path) -> None:
    shutil.move(d / "branch.safetensors", d.parent / "real.safetensors")
    (d / "branch.safetensors").symlink_to(d.parent / "real.safetensors")


CASES: list[tuple[str, Callable[[Path], None], str, str, str | None]] = [
    # (id, mutation, code, severity, location must contain)
    ("no-manifest", _no_manifest, "M001", "error", None),
    ("bad-json", _bad_json, "M002", "error", "manifest.json"),
    ("wrong-type", lambda d: edit_manifest(d, _set("num_layers", "two")), "M003", "error", "#num_layers"),
    ("unknown-field", lambda d: edit_manifest(d, _set("colour", "red")), "M003", "error", "#colour"),
    ("nested-field", lambda d: edit_manifest(d, _set("head.labels", ["x"])), "M003", "error", "#head.labels"),
    ("newer-schema", lambda d: edit_manifest(d, _set("schema_version", "2.0")), "M004", "error",
     "#schema_version"),
    ("unknown-head", lambda d: edit_manifest(d, _set("head", {"type": "ranking", "k": 3})), "M005", "error",
     "#head.type"),
    ("requires", lambda d: edit_manifest(d, _set("requires", ">=99")), "V001", "error", "#requires"),
    ("missing-weights", _no_weights, "W001", "error", "branch.safetensors"),
    ("sha-mismatch", _flip_data_byte, "W002", "error", "#weights.sha256"),
    ("truncated", _truncate, "W003", "error", "branch.safetensors"),
    ("missing-tensor", lambda d: edit_manifest(d, _set("num_layers", 3)), "W004", "error", None),
    ("extra-tensor", lambda d: edit_manifest(d, _set("num_layers", 1)), "W005", "error", None),
    ("wrong-shape", lambda d: edit_manifest(d, _set("head.labels", ["a", "b", "c"])), "W006", "error", None),
    ("wrong-dtype", lambda d: edit_manifest(d, _set("weights.dtype", "float16")), "W007", "error",
     "#weights.dtype"),
    ("path-escape", _escape, "W008", "error", "#weights.path"),
    ("symlink-escape", _symlink_escape, "W008", "error", "#weights.path"),
    ("absolute-path", lambda d: edit_manifest(d, _set("weights.path", "/etc/passwd")), "W008", "error", None),
    ("nan", _nan, "W009", "error", None),
    ("depth-range", lambda d: edit_manifest(d, _set("attach_depth", 9)), "T002", "error", "#attach_depth"),
    ("fingerprint", lambda d: edit_manifest(d, _set("trunk.fingerprint", "ab" * 32)), "T001", "error",
     "#trunk.fingerprint"),
    ("probe", lambda d: edit_manifest(d, _set("tokenizer.probe_sha256", "cd" * 32)), "K001", "error",
     "#tokenizer.probe_sha256"),
    ("vocab", lambda d: edit_manifest(d, _set("tokenizer.vocab_size", 7)), "K003", "error", "#tokenizer"),
]


def test_good_branch_passes(tiny_bert_dir: Path, good_branch: Path) -> None:
    code, report = run_validate(tiny_bert_dir, good_branch)
    assert (code, report["status"], report["findings"]) == (0, "passed", [])
    assert set(report["branches"][0]["checks"].values()) <= {"passed", "skipped"}


@pytest.mark.parametrize(("mutate", "code", "severity", "where"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_artifact(mutate: Callable[[Path], None], code: str, severity: str, where: str | None,
                      tiny_bert_dir: Path, good_branch: Path, tmp_path: Path) -> None:
    d = tmp_path / "sentiment"
    shutil.copytree(good_branch, d)
    mutate(d)
    exit_code, report = run_validate(tiny_bert_dir, d)
    hits = [f for f in report["findings"] if f["code"] == code]
    assert hits, report["findings"]
    assert hits[0]["severity"] == severity
    assert hits[0]["message"]
    if where:
        assert where in hits[0]["location"]
    assert exit_code == 1 and report["status"] == "failed"


def test_definition_hash_only_is_a_warning(tiny_bert_dir: Path, good_branch: Path, tmp_path: Path) -> None:
    d = tmp_path / "sentiment"
    shutil.copytree(good_branch, d)
    edit_manifest(d, _set("tokenizer.definition_sha256", "ef" * 32))
    code, report = run_validate(tiny_bert_dir, d)
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("K002", "warning")]
    assert (code, report["status"]) == (0, "passed-with-warnings")
    assert run_validate(tiny_bert_dir, d, strict=True)[0] == 1


def test_trunk_mismatches(other_trunks: dict[str, Path], good_branch: Path) -> None:
    code, report = run_validate(other_trunks["reseeded"], good_branch)
    assert code == 1 and [f["code"] for f in report["findings"]] == ["T001"]
    code, report = run_validate(other_trunks["wider"], good_branch)
    assert code == 1 and "T003" in [f["code"] for f in report["findings"]]
    assert "hidden_size" in next(f for f in report["findings"] if f["code"] == "T003")["message"]


def test_cross_branch_checks(tiny_bert_dir: Path, good_branch: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(good_branch, twin)
    code, report = run_validate(tiny_bert_dir, good_branch, twin)
    assert code == 1 and [f["code"] for f in report["findings"]] == ["C001"]
    longer = make_branch(tiny_bert_dir, tmp_path / "other", name="other", depth=1, layers=1, max_length=32)
    code, report = run_validate(tiny_bert_dir, good_branch, longer)
    assert code == 0 and [(f["code"], f["severity"]) for f in report["findings"]] == [("K004", "warning")]


def test_older_schema_converts_forward(tiny_bert_dir: Path, good_branch: Path, tmp_path: Path) -> None:
    d = tmp_path / "old"
    shutil.copytree(good_branch, d)

    def to_0_9(data: dict[str, Any]) -> None:
        data["schema_version"] = "0.9"
        data["depth"] = data.pop("attach_depth")
        data["layers"] = data.pop("num_layers")

    edit_manifest(d, to_0_9)
    code, report = run_validate(tiny_bert_dir, d)
    assert (code, report["findings"]) == (0, [])


def test_without_trunk_skips_trunk_checks(good_branch: Path) -> None:
    code, report = run_validate(None, good_branch)
    assert code == 0 and report["trunk"] is None
    assert report["branches"][0]["checks"]["trunk"] == "skipped"


def test_text_output_and_usage_errors(tiny_bert_dir: Path, good_branch: Path) -> None:
    r = CliRunner().invoke(cli, ["validate", "--no-plugins", "--trunk", str(tiny_bert_dir), "--branch",
                                 str(good_branch)])
    assert r.exit_code == 0 and "passed" in r.output
    r = CliRunner().invoke(cli, ["validate", "--format", "yaml"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["validate", "--trunk", "/nonexistent/trunk", "--branch", str(good_branch)])
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output


def test_validation_codes_documented() -> None:
    from mtbranch.spec.findings import CODES

    doc = (Path(__file__).parent.parent / "docs" / "validation-codes.md").read_text()
    for code, (severity, _) in CODES.items():
        assert f"| {code} | {severity} |" in doc, code
