"""An MLflow flavor for composed artifacts (optional extra ``[mlflow]``): log, register and load them.

``log_model(artifact)`` copies the composed artifact (the files its lock lists) into an MLflow model with two
flavors: ``mtbranch`` (loaded back by :func:`load_model` as the :class:`ComposedModel`) and ``python_function``
(``mlflow.pyfunc.load_model(uri).predict(df)``: a DataFrame of texts in, one column per task out). The lock's
sha256 (the ``version`` that ``mtbranch serve`` reports) tags the logged model and, when registered, the model
version: a registry entry names exactly the artifact it holds, and loading checks every file against the lock.

Written as MLflow's own flavors are (``save_model``/``log_model``/``load_model``/``_load_pyfunc``): no pickle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mtbranch
from mtbranch.errors import MtbranchError, require_extra

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel
    from mtbranch.spec.lock import ArtifactLock

FLAVOR_NAME = "mtbranch"
DATA_DIR = "composed"
TAG = "mtbranch.lock_sha256"
TEXT, PAIR = "text", "text_pair"  # the input DataFrame's columns (a one-column frame: that column is the text)


def _lock_sha256(artifact: Path) -> str:
    """sha256 of the lock file (what ``mtbranch serve`` reports as its version), once the lock reads as one."""
    from mtbranch.composition.artifact import LOCK_NAME, read_lock

    read_lock(artifact)  # a directory that is not a composed artifact: an MtbranchError naming the lock
    return hashlib.sha256((artifact / LOCK_NAME).read_bytes()).hexdigest()


def _copy_artifact(artifact: Path, dst: Path) -> ArtifactLock:
    """Copy the lock and the files it lists (nothing else in the directory); returns the lock."""
    from mtbranch.composition.artifact import LOCK_NAME, copy_file, read_lock

    lock = read_lock(artifact)
    for rel in [LOCK_NAME, *lock.files]:
        copy_file(artifact / rel, dst / rel)
    return lock


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, TEXT), ColSpec(DataType.string, PAIR, required=False)]),
        params=ParamSchema([ParamSpec("tasks", DataType.string, [], shape=(-1,))]),
    )


def save_model(artifact: str | os.PathLike[str], path: str | os.PathLike[str], mlflow_model: Any = None,
               signature: Any = None) -> None:
    """Write the MLflow model directory ``path`` (MLmodel, requirements.txt, ``composed/``) for ``artifact``;
    ``signature`` defaults to a ``text`` (+ optional ``text_pair``) column and a ``tasks`` parameter."""
    require_extra("mlflow", "mtbranch.mlflow")
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    src, out = Path(artifact), Path(path)
    if out.exists():
        raise MtbranchError("the MLflow model directory already exists", path=str(out),
                            hint="choose a new path (MLflow never overwrites a saved model)")
    out.mkdir(parents=True)
    try:
        lock = _copy_artifact(src, out / DATA_DIR)
    except Exception:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written
        raise
    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    mlflow_model.signature = signature or mlflow_model.signature or _signature()
    tasks = lock.names
    (out / "requirements.txt").write_text(f"mtbranch=={mtbranch.__version__}\n", encoding="utf-8")
    add_to_model(mlflow_model, loader_module="mtbranch.mlflow", data=DATA_DIR)
    mlflow_model.add_flavor(FLAVOR_NAME, mtbranch_version=mtbranch.__version__, data=DATA_DIR,
                            lock_sha256=_lock_sha256(src), tasks=tasks)
    mlflow_model.save(str(out / "MLmodel"))


def log_model(artifact: str | os.PathLike[str], name: str = "model", *,
              registered_model_name: str | None = None, **kwargs: Any) -> Any:
    """Log ``artifact`` to the active run (one is started if none is); register it as a new version of
    ``registered_model_name`` when given, tagged ``mtbranch.lock_sha256``. ``kwargs`` go to MLflow's
    ``Model.log`` (``metadata``, ``tags``, ``signature``...). Returns MLflow's ``ModelInfo``."""
    require_extra("mlflow", "mtbranch.mlflow")
    from mlflow import MlflowClient
    from mlflow.models import Model

    flavor = sys.modules[__name__]  # this module is the flavor: Model.log calls its save_model
    sha = _lock_sha256(Path(artifact))
    tags = {**(kwargs.pop("tags", None) or {}), TAG: sha}
    info = Model.log(artifact_path=None, name=name, flavor=flavor, artifact=artifact,
                     registered_model_name=registered_model_name, tags=tags, **kwargs)
    if registered_model_name is not None and info.registered_model_version is not None:
        MlflowClient().set_model_version_tag(registered_model_name, str(info.registered_model_version), TAG, sha)
    return info


def load_model(model_uri: str, dst_path: str | os.PathLike[str] | None = None, **load_kwargs: Any) -> Any:
    """The :class:`ComposedModel` of an MLflow model (``runs:/...``, ``models:/name/1``, a path...); every file
    is checked against its lock (``mtbranch.load``); ``load_kwargs`` go to it (``device``, ``dtype``, ``tasks``)."""
    require_extra("mlflow", "mtbranch.mlflow")
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    local = Path(download_artifacts(artifact_uri=model_uri, dst_path=None if dst_path is None else str(dst_path)))
    conf = Model.load(str(local / "MLmodel")).flavors.get(FLAVOR_NAME)
    if conf is None:
        raise MtbranchError(f"{model_uri} is not an mtbranch model (its MLmodel has no {FLAVOR_NAME!r} flavor)",
                            hint="log it with mtbranch.mlflow.log_model(artifact)")
    return mtbranch.load(local / conf["data"], **load_kwargs)


class ComposedPyfunc:
    """``predict(DataFrame) -> DataFrame``: column ``text`` (or the only column) and optional ``text_pair`` in;
    one column per task out, each cell that task's result for the row (as ``predict`` returns it). Without
    ``params={"tasks": [...]}`` (or with an empty list): every single-text task, plus pair tasks when
    ``text_pair`` is given."""

    def __init__(self, model: ComposedModel) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({TEXT: list(model_input)})
        column = TEXT if TEXT in frame.columns else (frame.columns[0] if len(frame.columns) == 1 else None)
        if column is None:
            raise MtbranchError(f"the input has columns {list(frame.columns)} but no {TEXT!r}",
                                hint=f"pass a DataFrame with a {TEXT!r} column (and {PAIR!r} for pair tasks)")
        pairs = frame[PAIR].tolist() if PAIR in frame.columns else None
        tasks = (params or {}).get("tasks")
        if tasks is None or len(tasks) == 0:  # the signature's default: []
            tasks = [b.name for b in self.model.branches
                     if b.manifest.tokenizer.input_signature == "single" or pairs is not None]
        rows = self.model.predict(frame[column].tolist(), tasks=list(tasks), text_pairs=pairs)
        return pd.DataFrame({t: [r[t] for r in rows] for t in tasks}, index=frame.index)


def _load_pyfunc(data_path: str, model_config: Any = None) -> ComposedPyfunc:
    """MLflow's pyfunc loader hook (``loader_module``): ``data_path`` is the copied composed artifact."""
    return ComposedPyfunc(mtbranch.load(data_path))
