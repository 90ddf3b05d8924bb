"""Model cards and hub references for branches (issue 29, items 3 and 5).

Every branch save_branch writes carries README.md with the Hub's metadata header, generated from the manifest by
mtbranch.branch.card; `inspect --card` prints a branch's or a composed model's card; validation warns (W011) on
a card that disagrees with the manifest; `new-plugin` ships a card and `--hub-layout` writes a Hub model folder;
`--branch hf:org/name@rev` resolves through huggingface_hub's cache with HF_HUB_OFFLINE=1 (no network).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtbranch.branch.card import card_disagreements, card_text, load_manifest
from mtbranch.cli.main import cli
from mtbranch.trunk.source import load_trunk_source
from mtbranch.validation.validator import Validator

from helpers import make_branch, make_serving_artifact

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_BRANCHES = sorted(ROOT.glob("examples/plugin-*/src/mtbranch_*/branch"))
TRAINING = {"task": "classification", "metric": "accuracy", "license": "apache-2.0",
            "data": {"train": [{"path": "/data/sst2/train.tsv", "sha256": "a" * 64}],
                     "dev": [{"path": "/data/sst2/dev.tsv", "sha256": "b" * 64}],
                     "train_examples": 100, "dev_examples": 20}}


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture()
def branch(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return make_branch(tiny_bert_dir, tmp_path / "sentiment", name="sentiment", depth=2, layers=1,
                       owner="team-a", metrics={"dev_accuracy": 0.91, "dev_f1": 0.9}, training=TRAINING)


def header(text: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard(text).data.to_dict()


def card_codes(branch: Path, trunk: Path) -> list[str]:
    _, found = Validator(load_trunk_source(trunk)).check_branch(branch)
    return [f.code for f in found]


def test_save_branch_writes_a_hub_card_from_the_manifest(branch: Path, tiny_bert_dir: Path) -> None:
    data = header((branch / "README.md").read_text())
    m = load_manifest(branch)
    assert data["pipeline_tag"] == "text-classification" and data["library_name"] == "mtbranch"
    assert data["license"] == "apache-2.0"
    facts = data["mtbranch"]
    assert facts["labels"] == ["negative", "positive"] and facts["owner"] == "team-a"
    assert facts["trunk"]["fingerprint"] == m.trunk.fingerprint and facts["weights_sha256"] == m.weights.sha256
    result = data["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "sst2", "type": "sst2", "split": "validation"}
    assert {x["type"]: x["value"] for x in result["metrics"]} == {"accuracy": 0.91, "f1": 0.9}
    text = (branch / "README.md").read_text()
    assert "## Intended use" in text and "/data/sst2/train.tsv" in text  # training provenance
    assert card_codes(branch, tiny_bert_dir) == []


def test_a_card_that_disagrees_with_the_manifest_is_w011(branch: Path, tiny_bert_dir: Path) -> None:
    m = json.loads((branch / "manifest.json").read_text())
    m["metrics"]["dev_accuracy"] = 0.5  # re-measured, card not regenerated
    (branch / "manifest.json").write_text(json.dumps(m))
    _, found = Validator(load_trunk_source(tiny_bert_dir)).check_branch(branch)
    w011 = [f for f in found if f.code == "W011"]
    assert len(w011) == 1 and w011[0].severity == "warning" and "model-index" in w011[0].message
    assert "--card" in (w011[0].hint or "")
    # the hint's fix: regenerate the card from the manifest
    code, out = invoke("inspect", branch, "--card")
    assert code == 0
    (branch / "README.md").write_text(out)
    assert card_codes(branch, tiny_bert_dir) == []


def test_a_card_extended_by_its_team_still_agrees(branch: Path) -> None:
    m = load_manifest(branch)
    text = card_text(m).replace("library_name: mtbranch", "language: en\nlibrary_name: mtbranch")
    text += "\n## Notes from the team\n\nWorks best on movie reviews.\n"
    assert card_disagreements(text, m) == []
    assert card_disagreements("# my notes\n", m) == ["no metadata header (the '---' YAML block the Hub reads)"]


def test_a_branch_without_a_card_is_not_warned(branch: Path, tiny_bert_dir: Path) -> None:
    (branch / "README.md").write_text("# notes\n\nA plain README a team keeps: not a card.\n")
    assert card_codes(branch, tiny_bert_dir) == []
    (branch / "README.md").unlink()
    assert card_codes(branch, tiny_bert_dir) == []
    (branch / "README.md").write_text("---\nlicense: mit\n---\n")  # a card, but not this manifest's
    assert card_codes(branch, tiny_bert_dir) == ["W011"]


def test_example_branches_ship_cards_that_agree() -> None:
    assert len(EXAMPLE_BRANCHES) == 8
    for d in EXAMPLE_BRANCHES:
        m = load_manifest(d)
        assert (d / "README.md").read_text() == card_text(m), f"regenerate: mtbranch inspect {d} --card"
        data = header((d / "README.md").read_text())
        assert data["mtbranch"]["trunk"]["fingerprint"] == m.trunk.fingerprint
        assert data["model-index"][0]["results"][0]["dataset"]["split"] == "validation"


def test_inspect_card_of_a_composed_model_has_one_section_per_branch(tiny_bert_dir: Path, tmp_path: Path) -> None:
    artifact = make_serving_artifact(tiny_bert_dir, tmp_path)
    assert not (artifact / "branches" / "sentiment" / "README.md").exists()  # the lock's files are unchanged
    code, out = invoke("inspect", artifact, "--card")
    assert code == 0
    names = [b["branch"] for b in header(out)["mtbranch"]["branches"]]
    assert sorted(names) == ["entities", "sentiment", "similarity"]
    assert all(f"\n## {n} 0.1.0\n" in out for n in names)
    code, out = invoke("inspect", tmp_path / "nowhere", "--card")
    assert code == 1 and "mtbranch.lock.json" in out


def test_new_plugin_ships_the_card_and_hub_layout_writes_a_hub_folder(branch: Path, tmp_path: Path) -> None:
    (branch / "README.md").unlink()  # an older branch without a card gets one in its package
    code, out = invoke("new-plugin", "acme-sentiment", "--branch", branch, "-o", tmp_path / "pkg")
    assert code == 0, out
    shipped = tmp_path / "pkg" / "src" / "acme_sentiment" / "branch" / "README.md"
    assert shipped.read_text() == card_text(load_manifest(branch))
    code, out = invoke("new-plugin", "acme-sentiment", "--branch", branch, "-o", tmp_path / "hub", "--hub-layout")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["README.md", "branch.safetensors",
                                                                     "manifest.json"]
    assert header((tmp_path / "hub" / "README.md").read_text())["mtbranch"]["branch"] == "sentiment"


def populate_hub_cache(cache: Path, repo: str, folder: Path, commit: str, ref: str = "main") -> Path:
    """huggingface_hub's cache layout: models--org--name/{blobs/<sha256>, refs/REF, snapshots/COMMIT/<name>
    -> ../../blobs/<sha256>} (each snapshot file a relative link to its blob, as the hub client writes them)."""
    import hashlib

    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "blobs").mkdir()
    (entry / "refs" / ref).write_text(commit)
    snap = entry / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        data = f.read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (entry / "blobs" / blob).write_bytes(data)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob)
    return snap


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the process's already imported
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hf_branch_reference_resolves_offline_from_the_cache(branch: Path, tiny_bert_dir: Path, tmp_path: Path,
                                                             offline_cache: Path) -> None:
    hub = tmp_path / "hub"
    assert invoke("new-plugin", "sentiment", "--branch", branch, "-o", hub, "--hub-layout")[0] == 0
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = populate_hub_cache(offline_cache, "acme/sentiment", hub, commit)
    populate_hub_cache(offline_cache, "acme/trunk", tiny_bert_dir, commit)

    from mtbranch.validation.sources import collect_branches

    [(local, source)] = collect_branches(["hf:acme/sentiment@main"])
    assert source == "hf:acme/sentiment@main" and (snap / "manifest.json").is_symlink()
    # the cache's links into blobs/ would be F001: the branch is used from a plain copy of that commit's files
    assert not (local / "manifest.json").is_symlink() and local.name == commit
    assert (local / "branch.safetensors").read_bytes() == (snap / "branch.safetensors").read_bytes()
    assert collect_branches([f"hf:acme/sentiment@{commit}"])[0][0] == local  # a pinned commit, no ref needed
    code, out = invoke("validate", "--no-plugins", "--trunk", "hf:acme/trunk", "--branch", "hf:acme/sentiment",
                       "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "passed", out
    assert report["branches"][0]["source"] == "hf:acme/sentiment" and report["trunk"]["reference"] == "hf:acme/trunk"
    code, out = invoke("compose", "--no-plugins", "--trunk", "hf:acme/trunk", "--branch", "hf:acme/sentiment@main",
                       "-o", tmp_path / "composed")
    assert code == 0, out
    lock = json.loads((tmp_path / "composed" / "mtbranch.lock.json").read_text())
    assert lock["branches"][0]["source"] == "hf:acme/sentiment@main"
    # and packaged from the Hub reference
    code, out = invoke("new-plugin", "acme-sentiment", "--branch", "hf:acme/sentiment", "-o", tmp_path / "pkg")
    assert code == 0, out
    assert (tmp_path / "pkg" / "src" / "acme_sentiment" / "branch" / "README.md").read_text() == \
        (snap / "README.md").read_text()


def test_hf_reference_missing_from_the_cache_offline_is_a_clear_error(offline_cache: Path, tmp_path: Path) -> None:
    code, out = invoke("validate", "--no-plugins", "--branch", "hf:acme/nothing@v1")
    assert code == 1 and "not in the hub cache" in out and "HF_HUB_OFFLINE" in out and "Traceback" not in out
    assert "hf download acme/nothing --revision v1" in out
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("# not a branch\n")
    populate_hub_cache(offline_cache, "acme/notes", tmp_path / "notes", "f" * 40)
    code, out = invoke("validate", "--no-plugins", "--branch", "hf:acme/notes")
    assert code == 1 and "cached without manifest.json" in out
    code, out = invoke("validate", "--no-plugins", "--branch", "hf:a/b/c")
    assert code == 1 and "hf:org/name[@revision]" in out


def test_hub_reference_forms() -> None:
    from mtbranch.errors import MtbranchError
    from mtbranch.hub import split_reference

    assert split_reference("hf:acme/sentiment@v1") == ("acme/sentiment", "v1")
    assert split_reference("hf:acme/sentiment") == ("acme/sentiment", None)
    assert split_reference("hf:bert-base-uncased") == ("bert-base-uncased", None)  # a legacy canonical repo
    for bad in ("hf:", "hf:a/b/c", "hf:/name", "hf:org/@v1"):
        with pytest.raises(MtbranchError, match=r"hf:org/name\[@revision\]"):
            split_reference(bad)
