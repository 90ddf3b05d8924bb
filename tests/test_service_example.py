"""examples/service/embed.py answers from several threads with the same results as predict()."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mtbranch.composition.artifact import compose, save_composed
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

EXAMPLE = Path(__file__).parent.parent / "examples" / "service" / "embed.py"


def test_service_example(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    b = make_branch(tiny_bert_dir, tmp_path / "b", name="sentiment", depth=2, layers=1)
    e = make_branch(tiny_bert_dir, tmp_path / "e", name="entities", depth=3, layers=1, head="token_classification")
    model = compose(load_trunk_source(tiny_bert_dir), [(b, "directory"), (e, "directory")])
    save_composed(model, tmp_path / "c")
    spec = importlib.util.spec_from_file_location("embed", EXAMPLE)
    assert spec and spec.loader
    embed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embed)
    texts = ["john visited paris", "a bad film", "the movie was good"]
    service = embed.TaskService(str(tmp_path / "c"))
    assert [service.handle(t) for t in texts] == [model.predict([t])[0] for t in texts]
    embed.main([str(tmp_path / "c"), *texts])
    assert '"sentiment"' in capsys.readouterr().out
