"""``mtbranch build RECIPE``: the pipeline end to end on a tiny recipe, resumed, and refused on bad recipes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sdk_fixtures
from click.testing import CliRunner
from sdk_fixtures import write_sentiment

from mtbranch.cli.main import cli

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)

RECIPE = """
out = "build-out"

[branch]
name = "tiny-sentiment"
version = "0.2.0"
owner = "team-tiny"

[task]
type = "classification"
trunk = "{trunk}"

[data]
train = "data/train.tsv"
dev = "data/dev.tsv"

[train]
epochs = 3
patience = 2
batch_size = 16
lr = 1e-3
max_length = 32

[sweep]
min_layers = 1
max_layers = 2
rule = "best"

[teacher]
enabled = true
epochs = 2

[distill]
enabled = true
retention = 0.5
min_layers = 0
"""


def _recipe(tmp_path: Path, trunk: Path, text: str = RECIPE) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    write_sentiment(tmp_path / "data" / "train.tsv", 160, seed=1)
    write_sentiment(tmp_path / "data" / "dev.tsv", 48, seed=2)
    path = tmp_path / "recipe.toml"
    path.write_text(text.format(trunk=trunk))
    return path


def _run(*args: str) -> object:
    return CliRunner().invoke(cli, ["build", *args, "--no-progress", "--threads", "1"], catch_exceptions=False)


@pytest.mark.slow
def test_build_runs_every_stage_then_resumes(sdk_trunk_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe(tmp_path, sdk_trunk_dir)
    res = _run(str(recipe))
    assert res.exit_code == 0, res.output
    out = tmp_path / "build-out"
    state = json.loads((out / "build-state.json").read_text())
    stages = state["stages"]
    assert {"sweep", "teacher", "distill", "export", "plugin"} <= set(stages)
    assert [r["layers"] for r in stages["sweep"]["rows"]] == [1, 2]
    assert stages["teacher"]["depth"] == 0 and stages["teacher"]["layers"] == 4
    # the distilled student (retention 0.5 of the teacher is easy) is fewer layers than the swept branch
    assert stages["distill"]["branch"] is not None
    assert stages["distill"]["layers"] < stages["sweep"]["layers"]
    assert stages["distill"]["value"] >= 0.5 * stages["teacher"]["value"]
    manifest = json.loads((out / "branch" / "manifest.json").read_text())
    assert manifest["name"] == "tiny-sentiment" and manifest["version"] == "0.2.0"
    assert manifest["num_layers"] == stages["distill"]["layers"]
    build = manifest["training"]["build"]
    assert build["recipe_sha256"] == hashlib.sha256(recipe.read_bytes()).hexdigest()
    assert build["recipe"]["sweep"]["rule"] == "best"
    assert build["stages"]["teacher"]["value"] == pytest.approx(stages["teacher"]["value"])
    assert build["retention"] == pytest.approx(stages["distill"]["value"] / stages["teacher"]["value"])
    assert (out / "sweep.json").is_file() and (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "plugin" / "pyproject.toml").is_file()
    assert (out / "plugin" / "src" / "mtbranch_tiny_sentiment" / "branch" / "manifest.json").is_file()

    # a second run redoes nothing: every training entry point now fails if called
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a finished stage ran again")

    for target in ("mtbranch.sdk.sweep.sweep", "mtbranch.sdk.train.train", "mtbranch.sdk.distill.distill"):
        monkeypatch.setattr(target, boom)
    again = _run(str(recipe))
    assert again.exit_code == 0, again.output
    assert again.output.count("done in an earlier run") == 5  # sweep, teacher, distill, export, plugin


@pytest.mark.slow
def test_distill_include_selected_keeps_the_better_of_student_and_swept(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """With include_selected, a student as large as the selected branch is distilled too; it is exported only
    when it beats the swept branch (no smaller student is tried here: min_layers = the selected L)."""
    text = (RECIPE.replace("min_layers = 1\nmax_layers = 2", "min_layers = 1\nmax_layers = 1")
            .replace("retention = 0.5\nmin_layers = 0", "retention = 0.5\nmin_layers = 1\ninclude_selected = true"))
    res = _run(str(_recipe(tmp_path, sdk_trunk_dir, text)))
    assert res.exit_code == 0, res.output
    stages = json.loads((tmp_path / "build-out" / "build-state.json").read_text())["stages"]
    swept, tried = stages["sweep"], stages["distill"]["tried"]
    assert [(t["layers"], t["depth"]) for t in tried] == [(1, 3)]  # the selected size, at the swept depth
    student = tried[0]["value"]
    assert (stages["distill"]["branch"] is not None) == (student > swept["value"])
    assert stages["export"]["value"] == pytest.approx(max(student, swept["value"]))
    assert stages["export"]["layers"] == 1


SWEEP_ONLY = (RECIPE.replace("epochs = 3\npatience", "epochs = 1\npatience")
              .replace("min_layers = 1\nmax_layers = 2", "min_layers = 1\nmax_layers = 1")
              .replace("[teacher]\nenabled = true", "[teacher]\nenabled = false")
              .replace("[distill]\nenabled = true", "[distill]\nenabled = false")
              + "\n[plugin]\nenabled = false\n")


@pytest.mark.slow
def test_adding_stages_reuses_the_finished_sweep(sdk_trunk_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: a team adds a teacher and distillation to a finished build; the unchanged sweep is reused (no
    "recipe changed ... --restart"), each L's epochs are headed in the log, and no retention is printed
    without a teacher."""
    recipe = _recipe(tmp_path, sdk_trunk_dir, SWEEP_ONLY)
    first = _run(str(recipe))
    assert first.exit_code == 0, first.output
    assert "[sweep] L=1 at depth 3: training" in first.output and "retention" not in first.output
    out = tmp_path / "build-out"
    swept = json.loads((out / "build-state.json").read_text())["stages"]["sweep"]
    assert len(swept["inputs"]) == 64

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the unchanged sweep ran again")

    monkeypatch.setattr("mtbranch.sdk.sweep.sweep", boom)
    recipe.write_text(SWEEP_ONLY.format(trunk=sdk_trunk_dir)
                      .replace("[teacher]\nenabled = false", "[teacher]\nenabled = true")
                      .replace("[distill]\nenabled = false", "[distill]\nenabled = true"))
    second = _run(str(recipe))
    assert second.exit_code == 0, second.output
    assert "[sweep] done in an earlier run" in second.output and "--restart" not in second.output
    assert "[teacher] finished" in second.output and "[distill] finished" in second.output
    assert "retention" in second.output  # now there is a teacher to keep a share of
    stages = json.loads((out / "build-state.json").read_text())["stages"]
    assert stages["sweep"] == swept and {"teacher", "distill", "export"} <= set(stages)

    # the branch's version reaches the export only: nothing is trained again
    for target in ("mtbranch.sdk.train.train", "mtbranch.sdk.distill.distill"):
        monkeypatch.setattr(target, boom)
    recipe.write_text(recipe.read_text().replace('version = "0.2.0"', 'version = "0.2.1"')
                      .replace('owner = "team-tiny"', 'owner = "team-other"'))
    third = _run(str(recipe), "--tag", "safety", "--tag", "reviews")
    assert third.exit_code == 0, third.output
    assert third.output.count("done in an earlier run") == 3 and "[export] finished" in third.output
    manifest = json.loads((out / "branch" / "manifest.json").read_text())
    assert (manifest["version"], manifest["owner"]) == ("0.2.1", "team-other")
    assert manifest["tags"] == ["safety", "reviews"]  # mtbranch build --tag


def test_stage_inputs_follow_what_each_stage_reads(tmp_path: Path) -> None:
    from mtbranch.sdk.build import read_recipe, stage_inputs

    def inputs(text: str) -> dict[str, str]:
        path = tmp_path / "r.toml"
        path.write_text(text.format(trunk="t"))
        recipe, _, sha = read_recipe(path)
        return stage_inputs(recipe, sha, "trunk-fp", [{"sha256": "a"}])

    base = inputs(RECIPE)
    version = inputs(RECIPE.replace('version = "0.2.0"', 'version = "0.3.0"').replace("team-tiny", "team-b"))
    assert {k for k in base if base[k] != version[k]} == {"export"}
    retention = inputs(RECIPE.replace("retention = 0.5", "retention = 0.6"))
    assert {k for k in base if base[k] != retention[k]} == {"distill", "export"}
    lr = inputs(RECIPE.replace("lr = 1e-3", "lr = 2e-3"))
    assert {k for k in base if base[k] != lr[k]} == {"sweep", "teacher", "distill", "export"}
    path = tmp_path / "r.toml"
    recipe, _, sha = read_recipe(path)
    assert stage_inputs(recipe, sha, "trunk-fp", [{"sha256": "b"}])["sweep"] != base["sweep"]  # the data changed
    # --tag reaches the export only; without tags the fingerprints are those builds had before --tag existed
    path.write_text(RECIPE.format(trunk="t"))
    recipe, _, sha = read_recipe(path)
    tagged = stage_inputs(recipe, sha, "trunk-fp", [{"sha256": "a"}], ["safety"])
    assert {k for k in base if base[k] != tagged[k]} == {"export"}
    assert stage_inputs(recipe, sha, "trunk-fp", [{"sha256": "a"}], ()) == base


def test_a_teacher_below_the_branch_it_teaches_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from mtbranch.sdk.build import _warn_weak_teacher

    swept = {"metric": "accuracy", "value": 0.90, "layers": 2}
    with caplog.at_level("WARNING", logger="mtbranch"):
        _warn_weak_teacher({"metric": "accuracy", "value": 0.95}, swept)
        assert not caplog.text
        _warn_weak_teacher({"metric": "accuracy", "value": 0.85}, swept)
    assert "teacher's dev accuracy 0.8500 is below the swept branch's 0.9000 (L=2)" in caplog.text


@pytest.mark.parametrize(("edit", "field"), [
    (("[sweep]", "[sweep]\nlayers = 3"), "sweep.layers"),
    (('type = "classification"', 'type = "ranking"'), "task.type"),
    (("epochs = 3", "epochs = -1"), "train.epochs"),
    (('dev = "data/dev.tsv"', 'dev = "data/dev.tsv"\ndev_split = 0.1'), "exactly one of 'dev'"),
    # issue 30: nothing diverged ships; every number finite and in range before work starts
    (("lr = 1e-3", "lr = inf"), "train.lr"),
    (("lr = 1e-3", "lr = nan"), "train.lr"),
    (("lr = 1e-3", "lr = 1e30"), "train.lr"),
    (("epochs = 3", "epochs = inf"), "train.epochs"),
    (("retention = 0.5", "retention = 0.5\ntemperature = inf"), "distill.temperature"),
    (("[teacher]\nenabled = true\nepochs = 2", "[teacher]\nenabled = true\nepochs = nan"), "teacher.epochs"),
])
def test_bad_recipe_names_the_field(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    recipe = _recipe(tmp_path, tmp_path, RECIPE.replace(*edit))
    res = _run(str(recipe))
    assert res.exit_code == 1 and field in res.output and "recipe.toml" in res.output, res.output


def test_recipe_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text("out = [unclosed\n")
    res = _run(str(path))
    assert res.exit_code == 1 and "not a valid TOML recipe" in res.output and "Traceback" not in res.output


def test_example_recipes_parse_and_read_the_prepared_data() -> None:
    """The recipes under examples/recipes (named in `build --help` and docs/build.md) stay valid, and their data
    paths are either the shared data folder next to the clone (../shared/data, read in place) or the files
    docs/scripts/prepare_data.py writes under runs/data."""
    from mtbranch.sdk.build import read_recipe

    root = Path(__file__).resolve().parents[1]
    prepare = (root / "docs" / "scripts" / "prepare_data.py").read_text()
    recipes = sorted((root / "examples" / "recipes").glob("*.toml"))
    assert {p.stem for p in recipes} >= {"intent", "slots"}
    for path in recipes:
        recipe, folder, _ = read_recipe(path)
        for rel in filter(None, (recipe.data.train, recipe.data.dev)):
            data = Path(os.path.normpath(folder / rel))
            if data.is_relative_to(root / "runs" / "data"):
                assert f'"{data.parent.name}"' in prepare, f"{path.name}: prepare_data.py does not write {rel}"
            else:
                assert data.is_relative_to(root.parent / "shared" / "data"), f"{path.name}: {rel}"
        assert Path(os.path.normpath(folder / recipe.out)).is_relative_to(root / "runs"), path.name


def test_include_selected_needs_a_teacher(tmp_path: Path) -> None:
    text = RECIPE.replace("[teacher]\nenabled = true", "[teacher]\nenabled = false").replace(
        "min_layers = 0\n", "min_layers = 0\ninclude_selected = true\n")
    res = _run(str(_recipe(tmp_path, tmp_path, text)))
    assert res.exit_code == 1 and "distill.include_selected" in res.output and "teacher.enabled" in res.output
    assert "Traceback" not in res.output


def test_missing_data_names_the_recipe_field(tmp_path: Path) -> None:
    """A newcomer who runs an example recipe before writing its data: the field, the path it resolved to and where
    paths are relative to, exit 1, nothing built."""
    recipe = _recipe(tmp_path, tmp_path, RECIPE.replace('dev = "data/dev.tsv"', 'dev = "prepared/dev.tsv"'))
    res = _run(str(recipe))
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "recipe field 'data.dev'" in res.output and str(tmp_path / "prepared" / "dev.tsv") in res.output
    assert "relative to the recipe's folder" in res.output
    assert not (tmp_path / "build-out").exists()


# -- issue 30, item 5: build-state.json is an input too ---------------------------------------------------------
SHA = "sha of the recipe"  # replaced by the recipe's own sha256: only the shape is wrong


@pytest.mark.parametrize("state", [
    [],  # a list, not an object
    {"recipe_sha256": SHA, "stages": []},
    {"recipe_sha256": 5, "stages": {}},
    {"recipe_sha256": SHA, "stages": {"sweep": "done"}},
    {"recipe_sha256": SHA, "stages": {"deploy": {}}},
    {"recipe_sha256": SHA, "stages": {"sweep": {"layers": "two"}}},
])
def test_build_state_of_the_wrong_shape_is_a_user_error(tmp_path: Path, state: object) -> None:
    recipe = _recipe(tmp_path, tmp_path / "no-trunk")
    out = tmp_path / "build-out"
    out.mkdir()
    sha = hashlib.sha256(recipe.read_bytes()).hexdigest()
    (out / "build-state.json").write_text(json.dumps(state).replace(SHA, sha))
    res = _run(str(recipe))
    assert res.exit_code == 1, res.output
    assert "build-state.json" in res.output and "--restart" in res.output and "Traceback" not in res.output


def _finished_sweep(tmp_path: Path, trunk: Path, branch_dir: Path, name: str, layers: int) -> Path:
    """A recipe whose state says the sweep finished with ``branch_dir`` (depth trunk layers - layers)."""
    text = RECIPE.replace("[teacher]\nenabled = true", "[teacher]\nenabled = false").replace(
        "[distill]\nenabled = true", "[distill]\nenabled = false")
    recipe = _recipe(tmp_path, trunk, text)
    out = tmp_path / "build-out"
    out.mkdir(exist_ok=True)
    sha = hashlib.sha256(recipe.read_bytes()).hexdigest()
    rec = {"branch": str(branch_dir), "metric": "accuracy", "layers": layers, "depth": 4 - layers, "value": 0.9,
           "rows": [], "plot": None}
    (out / "build-state.json").write_text(json.dumps({"recipe_sha256": sha, "stages": {"sweep": rec}}))
    return recipe


def test_hand_edited_state_naming_a_foreign_branch_is_refused(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """The record points outside the build: export would have shipped that branch under the recipe's name."""
    from helpers import make_branch

    foreign = make_branch(sdk_trunk_dir, tmp_path / "elsewhere" / "someone", name="someone", depth=3, layers=1)
    recipe = _finished_sweep(tmp_path, sdk_trunk_dir, foreign, "someone", 1)
    res = _run(str(recipe))
    assert res.exit_code == 1, res.output
    assert "stage 'sweep' names the branch" in res.output and "--restart" in res.output
    assert not (tmp_path / "build-out" / "branch").exists()  # nothing exported


def test_foreign_branch_in_the_stage_folder_is_refused(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """The record names the right folder, but the branch there is another one (another name, another trunk)."""
    from conftest import make_bert_dir
    from helpers import make_branch

    other_trunk = make_bert_dir(tmp_path / "other-trunk", seed=9)
    folder = tmp_path / "build-out" / "sweep-branch"
    make_branch(other_trunk, folder, name="tiny-sentiment", depth=3, layers=1)
    recipe = _finished_sweep(tmp_path, sdk_trunk_dir, folder, "tiny-sentiment", 1)
    res = _run(str(recipe))
    assert res.exit_code == 1, res.output
    assert "not the one this build made" in res.output and "another trunk" in res.output
    assert not (tmp_path / "build-out" / "branch").exists()
