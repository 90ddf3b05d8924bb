"""The int8 CPU fast path: which modules are quantized, outputs near float32, clear errors, CLI option."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mtbranch.cli.main import cli
from mtbranch.composition.artifact import load
from mtbranch.errors import UsageError

from helpers import make_serving_artifact


@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("quant"))


def _dynamic_linear() -> type:
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def test_only_transformer_layers_are_quantized(artifact: Path) -> None:
    model = load(artifact, quantize="int8")
    qlinear = _dynamic_linear()
    stacks = [model.trunk.layers, *(b.layers for b in model.branches)]
    in_layers = [m for s in stacks for m in s.modules() if isinstance(m, nn.Linear | qlinear)]
    assert in_layers and all(isinstance(m, qlinear) for m in in_layers)
    heads = [m for b in model.branches for m in b.head.modules() if isinstance(m, nn.Linear | qlinear)]
    assert heads and all(type(m) is nn.Linear for m in heads)  # heads stay float32
    assert model.quantized == "int8"


def test_int8_outputs_near_float32(artifact: Path) -> None:
    ref, q = load(artifact), load(artifact, quantize="int8")
    ids = torch.randint(5, 90, (4, 12))
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    with torch.inference_mode():
        a, b = ref(ids, mask, types), q(ids, mask, types)
    assert set(a) == set(b) == {"sentiment", "entities", "similarity"}
    for name in a:
        scale = a[name].abs().max().item()
        diff = (a[name] - b[name]).abs().max().item()
        assert 0 < diff <= 0.1 * scale + 1e-3, (name, diff, scale)  # changed (really int8), but close


def test_int8_needs_float32_cpu(artifact: Path) -> None:
    with pytest.raises(UsageError, match="float32 model on the CPU"):
        load(artifact, dtype="bfloat16", quantize="int8")
    with pytest.raises(UsageError, match="unknown quantization"):
        load(artifact, quantize="int4")


def test_predict_cli_quantize(artifact: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["predict", str(artifact), "the film", "--task", "sentiment", "--quantize", "int8",
                             "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"sentiment"' in ok.output
    bad = runner.invoke(cli, ["predict", str(artifact), "the film", "--quantize", "int4"])
    assert bad.exit_code == 2 and "int4" in bad.output
