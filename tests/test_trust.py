"""The trust model (docs/reliability.md): artifacts are data, plugins are code.

* The package sources never unpickle: no pickle/dill/joblib/marshal/shelve, no ``torch.load``, no
  ``allow_pickle=True`` / ``weights_only=False``, and model ``from_pretrained`` only with
  ``use_safetensors=True`` (it would otherwise fall back to pickled ``.bin`` files).
* Validating branch directories (``--no-plugins``), loading a composed artifact with built-in heads,
  predicting, ``verify`` and ``inspect`` import no plugin code and unpickle nothing.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch
from catalogue import installed
from click.testing import CliRunner

import mtbranch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, save_composed
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ["core", "plugins", "sdk", "cli"]
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unpickling_uses(source: str) -> list[str]:
    """Every construct in ``source`` that can unpickle, as ``"line: what"``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{line}: import {n}" for n in names if n.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
            if func.endswith(("torch.load", "jit.load")):
                found.append(f"{line}: {func}(...)")
            if kw.get("allow_pickle") == "True" or kw.get("weights_only") == "False":
                found.append(f"{line}: {func}(allow_pickle/weights_only)")
            if func.endswith(".from_pretrained") and "Tokenizer" not in func and kw.get("use_safetensors") != "True":
                found.append(f"{line}: {func}(...) without use_safetensors=True")
    return sorted(set(found))


def test_the_scanner_catches_what_it_looks_for() -> None:
    bad = """
import pickle
from joblib import load
import numpy as np
torch.load(path)
np.load(path, allow_pickle=True)
torch.load(path, weights_only=False)
AutoModel.from_pretrained(path)
"""
    assert len(unpickling_uses(bad)) == 7
    good = """
AutoModel.from_pretrained(path, use_safetensors=True)
AutoTokenizer.from_pretrained(path)
np.load(path)
x = "never unpickle; torch.load is refused"  # torch.load(
"""
    assert unpickling_uses(good) == []


def test_package_sources_never_unpickle() -> None:
    files = [p for d in PACKAGE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 30
    problems = {str(p.relative_to(ROOT)): u for p in files if (u := unpickling_uses(p.read_text()))}
    assert problems == {}


# -- no plugin import, no unpickling at validate / load / predict ---------------------------------------------
RECORDER = """
    from pathlib import Path
    Path({mark!r}).write_text("imported")

    from mtbranch.plugins import hookimpl

    @hookimpl
    def mtbranch_branches():
        return []
"""


@pytest.fixture()
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("something tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_artifacts_are_read_without_plugin_code_or_unpickling(tiny_bert_dir: Path, tmp_path: Path,
                                                             no_unpickling: None) -> None:
    branch = make_branch(tiny_bert_dir, tmp_path / "sentiment", name="sentiment", depth=2, layers=1)
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(branch, "directory")]), tmp_path / "c")
    mark = tmp_path / "plugin-was-imported"
    with installed(tmp_path / "site", "recorder_plugin", RECORDER.format(mark=str(mark))):
        r = CliRunner().invoke(cli, ["validate", "--no-plugins", "--trunk", str(tiny_bert_dir), "--branch",
                                     str(branch)])
        assert r.exit_code == 0, r.output
        model = mtbranch.load(tmp_path / "c")
        assert model.predict(["the film"])[0]["sentiment"]["label"]
        for args in (["verify", str(tmp_path / "c")], ["inspect", str(tmp_path / "c")],
                     ["predict", str(tmp_path / "c"), "the film"]):
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 0, r.output
        assert not mark.exists()
        # the recorder works: listing plugins does import it
        assert CliRunner().invoke(cli, ["plugins", "--json"]).exit_code == 0
        assert mark.read_text() == "imported"
