"""SDK tasks are head types with a training side, looked up by name: the SDK holds no head type names, a plugin's
trainable head type trains like a built-in one, and a head type without (or with a broken) training side says so."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import sdk_fixtures
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict
from sdk_fixtures import sentiment_data

from mtbranch.errors import MtbranchError
from mtbranch.heads.registry import HeadType, _build_linear, _linear_shapes, builtin_head_types
from mtbranch.heads.training import HeadTraining, resolve_training
from mtbranch.plugins import hookimpl
from mtbranch.plugins.manager import PluginManager, set_plugin_manager
from mtbranch.spec.heads import BUILTIN_HEAD_TYPES

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir
SDK = Path(__file__).resolve().parents[1] / "sdk"


def test_the_sdk_dispatches_on_no_head_type_name() -> None:
    """No string literal naming a built-in head type, and no import of their name constants, in sdk/: every task
    is looked up by name (mtbranch.sdk.tasks), so a plugin's head type is trained by the same code."""
    names = {*BUILTIN_HEAD_TYPES, *(n.replace("_", "-") for n in BUILTIN_HEAD_TYPES)}
    constants = {"CLASSIFICATION", "REGRESSION", "TOKEN_CLASSIFICATION", "BUILTIN_HEAD_TYPES"}
    found = []
    for path in sorted(SDK.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.ImportFrom) and node.module == "mtbranch.spec.heads":
                found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name in constants]
    assert found == []


def test_every_built_in_head_type_has_its_training_side_on_its_record() -> None:
    for ht in builtin_head_types():
        assert isinstance(ht.training, str)  # named, imported on first use: discovery imports no SDK
        t = resolve_training(ht.name, ht.training)
        assert isinstance(t, HeadTraining) and t.default_metric in t.metrics


class Polarity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["polarity"] = "polarity"
    labels: list[str]
    dropout: float = 0.1

    @property
    def num_outputs(self) -> int:
        return len(self.labels)


def _polarity(training: Any) -> HeadType:
    from mtbranch.heads.postprocess import classification

    def result(spec: Any, row: list[float], ctx: Any = None) -> Any:
        return classification(_Spec(spec.labels), row)

    return HeadType("polarity", Polarity, True, _linear_shapes, _build_linear, result, "a plugin's head",
                    training=training)


@dataclasses.dataclass
class _Spec:
    labels: list[str]
    multi_label: bool = False


class _Plugin:
    def __init__(self, *types: HeadType) -> None:
        self.types = list(types)

    @hookimpl
    def mtbranch_head_types(self) -> list[HeadType]:
        return self.types


def _trainable_polarity() -> HeadType:
    from mtbranch.sdk.tasks import CLASSIFICATION

    # the built-in classification training side, with the plugin's own spec model
    return _polarity(dataclasses.replace(CLASSIFICATION,
                                         make_spec=lambda labels, dropout: Polarity(labels=labels, dropout=dropout)))


@pytest.fixture
def plugins() -> Iterator[PluginManager]:
    pm = PluginManager(autoload=False)
    set_plugin_manager(pm)
    try:
        yield pm
    finally:
        set_plugin_manager(None)


def test_a_head_type_without_training_side_is_not_a_task(plugins: PluginManager, tmp_path: Path) -> None:
    from mtbranch.cli.main import cli
    from mtbranch.sdk.tasks import get_task, trainable_names

    plugins.register(_Plugin(_polarity(None)), "polarity")
    assert trainable_names() == list(BUILTIN_HEAD_TYPES)
    with pytest.raises(MtbranchError, match="'polarity' has no training side") as ei:
        get_task("polarity")
    assert "classification, regression, token-classification" in (ei.value.hint or "")
    with pytest.raises(MtbranchError, match="'ranking' is not a head type"):
        get_task("ranking")
    res = CliRunner().invoke(cli, ["train", "--task", "polarity", "--trunk", "x", "--train", "x", "--name", "p",
                                   "-o", str(tmp_path / "p")])
    assert res.exit_code == 2 and "has no training side" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(("change", "why"), [
    ({"default_metric": "f2"}, "default_metric 'f2' is not one of its metrics"),
    ({"loss": None}, "training.loss is not callable"),
    ({"read_label": None}, "read_label and training.encode must be callable"),
    ({"data": "images"}, "training.data is 'images'"),
    ({"data": "tokens", "label_names_in": None}, "label_names_in must be callable for token data"),
])
def test_a_broken_training_side_is_reported_and_the_head_type_ignored(plugins: PluginManager,
                                                                      change: dict[str, Any], why: str) -> None:
    ht = _trainable_polarity()
    assert isinstance(ht.training, HeadTraining)
    plugins.register(_Plugin(dataclasses.replace(ht, training=dataclasses.replace(ht.training, **change))), "bad")
    assert "polarity" not in plugins.head_types()
    assert [(f.code, why in f.message) for f in plugins.findings] == [("P003", True)]


def test_a_training_side_named_by_a_string_that_does_not_import_is_an_error() -> None:
    with pytest.raises(MtbranchError, match=r"'x': its training side 'nowhere\.at_all:T' cannot be imported"):
        resolve_training("x", "nowhere.at_all:T")
    with pytest.raises(MtbranchError, match="is not a usable HeadTraining"):
        resolve_training("x", "mtbranch.sdk.tasks:get_task")


@pytest.mark.slow
def test_a_plugin_head_type_trains_composes_and_predicts(plugins: PluginManager, sdk_trunk_dir: Path,
                                                         tmp_path: Path) -> None:
    import mtbranch
    from mtbranch.sdk.train import BranchInfo, TrainConfig, train

    plugins.register(_Plugin(_trainable_polarity()), "polarity")
    tr, dev = sentiment_data(tmp_path, 80, 20)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_length=32, progress=False)
    res = train(str(sdk_trunk_dir), "polarity", tr, dev, layers=1, cfg=cfg, info=BranchInfo("pol"),
                out_dir=tmp_path / "pol")
    assert res.manifest is not None and res.manifest.head.type == "polarity" and res.metric == "accuracy"
    assert res.manifest.training["task"] == "polarity"
    model = mtbranch.compose(str(sdk_trunk_dir), [tmp_path / "pol"], plugin_manager=plugins)
    out = model.predict(["the movie was good"])[0]["pol"]
    assert out["label"] in ("0", "1")


def _label_set(value: Any) -> tuple[str, ...]:
    from mtbranch.heads.training import LabelError

    names = tuple(sorted(n.strip() for n in str(value).split("#")))
    if not all(names):
        raise LabelError("an empty name", hint="remove the stray '#'")
    return names


def test_a_tasks_label_reader_reads_tables_and_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The task's reader reads every label cell (a folder's `label` lines too, with no warning about '#' joins); its
    refusal is an error naming the file and line, with the reader's hint."""
    from mtbranch.sdk.data import DataError, TableSpec, load_table_data

    (tmp_path / "seq.in").write_text("play jazz and book a table\nplay jazz\n")
    (tmp_path / "label").write_text("PlayMusic#BookRestaurant\nPlayMusic\n")
    with caplog.at_level("WARNING", logger="mtbranch"):
        d = load_table_data(tmp_path, TableSpec(read_label=_label_set))
    assert [e.label for e in d.examples] == [("BookRestaurant", "PlayMusic"), ("PlayMusic",)]
    assert "join several intents" not in caplog.text
    table = tmp_path / "t.tsv"
    table.write_text("text\tlabel\nplay jazz\tPlayMusic\nbook\tBookRestaurant##\n")
    with pytest.raises(DataError) as ei:
        load_table_data(table, TableSpec(read_label=_label_set))
    assert str(ei.value).startswith(f"{table}: line 3: an empty name") and ei.value.hint == "remove the stray '#'"
