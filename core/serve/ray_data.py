"""Batch prediction on Ray Data: corpora beyond one machine, with one loaded composed model per actor.

``ds.map_batches(ComposedPredictor, fn_constructor_kwargs={"artifact": ...}, concurrency=N, batch_size=B)``
starts N actors; each loads the artifact once (hashes verified) and runs every batch it is given through
:meth:`~mtbranch.composition.model.ComposedModel.predict`. Rows keep their columns and gain ``results``
(the JSON of the per-task results, one string per row: a stable column type whatever the tasks return)::

    import ray
    from mtbranch.serve.ray_data import predict_dataset

    ds = ray.data.read_text("texts.txt")                    # one row per line, column "text"
    predict_dataset(ds, "composed/", concurrency=4).write_json("predictions/")

The artifact path must be readable on every node (as for :mod:`mtbranch.serve.ray_app`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mtbranch.errors import MtbranchError, require_extra


class ComposedPredictor:
    """A callable class for ``Dataset.map_batches``: loaded once per actor, then one ``predict`` per batch."""

    def __init__(self, artifact: str, *, tasks: Sequence[str] | None = None, text_column: str = "text",
                 pair_column: str | None = None, batch_size: int = 32, load_kwargs: dict[str, Any] | None = None
                 ) -> None:
        from mtbranch.composition.artifact import load

        self.model = load(artifact, **(load_kwargs or {}))
        self.text_column, self.pair_column, self.batch_size = text_column, pair_column, batch_size
        if pair_column is None and not tasks:  # pair tasks need a pair column
            tasks = [b.name for b in self.model.branches if b.manifest.tokenizer.input_signature == "single"]
        self.tasks = list(tasks) if tasks else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.text_column not in batch:
            raise MtbranchError(f"no column {self.text_column!r} in the dataset",
                                hint=f"columns: {', '.join(batch)}; pass text_column=")
        texts = [str(t) for t in batch[self.text_column]]
        pairs = None if self.pair_column is None else [str(p) for p in batch[self.pair_column]]
        results = self.model.predict(texts, tasks=self.tasks, text_pairs=pairs, batch_size=self.batch_size)
        return {**batch, "results": [json.dumps(r) for r in results]}


def predict_dataset(ds: Any, artifact: str, *, concurrency: int = 1, batch_size: int = 256,
                    num_cpus: float | None = None, **predictor_kwargs: Any) -> Any:
    """``ds`` with a ``results`` column, computed by ``concurrency`` actors each holding one loaded model."""
    require_extra("ray", "mtbranch.serve.ray_data")
    options: dict[str, Any] = {} if num_cpus is None else {"num_cpus": num_cpus}
    return ds.map_batches(ComposedPredictor, fn_constructor_kwargs={"artifact": str(artifact), **predictor_kwargs},
                          concurrency=concurrency, batch_size=batch_size, batch_format="numpy", **options)
