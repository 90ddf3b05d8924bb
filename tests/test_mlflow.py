"""The MLflow flavor (issue 29, item 4): a composed artifact logged, registered and loaded back through a local
file store, its pyfunc predicting a DataFrame of texts into one column per task, equal to ``predict``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra; the dev extra installs it, so CI runs this
pd = pytest.importorskip("pandas")

import mtbranch  # noqa: E402

from helpers import make_serving_artifact, results_close  # noqa: E402


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # MLflow 3 keeps the file store for local use behind this switch (its default is a database server)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_mlflow_round_trip_registers_the_lock_sha256(tiny_bert_dir: Path, tmp_path: Path, store: str) -> None:
    from mtbranch.mlflow import TAG, load_model, log_model

    artifact = make_serving_artifact(tiny_bert_dir, tmp_path / "a")
    sha = hashlib.sha256((artifact / "mtbranch.lock.json").read_bytes()).hexdigest()
    with mlflow.start_run():
        info = log_model(artifact, "composed", registered_model_name="acme-tasks")
    assert str(info.registered_model_version) == "1"
    version = mlflow.MlflowClient().get_model_version("acme-tasks", "1")
    assert version.tags[TAG] == sha
    assert mlflow.get_logged_model(info.model_id).tags[TAG] == sha  # the logged model carries it too
    assert info.flavors["mtbranch"]["lock_sha256"] == sha and "python_function" in info.flavors

    texts = ["a gripping film", "Angela Merkel met Emmanuel Macron in Paris ."]
    pairs = ["a good movie", "leaders met in France"]
    local = mtbranch.load(artifact)
    want = local.predict(texts, text_pairs=pairs)

    # the flavor itself: the ComposedModel, every file checked against the lock
    model = load_model("models:/acme-tasks/1", dst_path=tmp_path / "dl")
    assert model.task_names == local.task_names and set(local.task_names) == {"sentiment", "entities", "similarity"}
    assert results_close(model.predict(texts, text_pairs=pairs), want)

    # the pyfunc: one column per task; without text_pair the pair task is left out, as /predict does
    pyfunc = mlflow.pyfunc.load_model("models:/acme-tasks/1")
    frame = pyfunc.predict(pd.DataFrame({"text": texts, "text_pair": pairs}))
    assert list(frame.columns) == local.task_names
    assert results_close([dict(row) for _, row in frame.iterrows()], want)
    single = pyfunc.predict(pd.DataFrame({"text": texts}))
    assert list(single.columns) == [t for t in local.task_names if t != "similarity"]
    subset = pyfunc.predict(pd.DataFrame({"text": texts}), params={"tasks": ["entities"]})
    assert list(subset.columns) == ["entities"] and results_close(subset["entities"].tolist(),
                                                                  [w["entities"] for w in want])


def test_log_model_refuses_a_directory_that_is_not_a_composed_artifact(tmp_path: Path, store: str) -> None:
    from mtbranch.errors import MtbranchError
    from mtbranch.mlflow import log_model

    (tmp_path / "empty").mkdir()
    with mlflow.start_run(), pytest.raises(MtbranchError, match=r"mtbranch\.lock\.json"):
        log_model(tmp_path / "empty")


def test_missing_mlflow_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from mtbranch.errors import MissingExtra
    from mtbranch.mlflow import log_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"pip install 'mtbranch\[mlflow\]'"):
        log_model(tmp_path)
