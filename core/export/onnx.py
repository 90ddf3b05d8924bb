"""Export a composed model as one ONNX graph (a named output per task), check it, and write a Triton repository.

The graph is the tensor-level forward: inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64,
``[batch, sequence]``, both axes dynamic), one output per task with the head's raw outputs (``[batch, labels]``
for sequence-level heads, ``[batch, sequence, labels]`` for token heads). Every output is computed from the one
encoding given: single-text tasks read a single-text encoding, pair tasks the pair encoding, so a model mixing
both is called once per signature (or exported once per signature with ``tasks``). Uses torch's dynamo-based
exporter (``torch.onnx.export(dynamo=True)``); everything is written to a temporary sibling and renamed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtbranch.errors import MtbranchError
from mtbranch.io.atomic import atomic_directory
from mtbranch.spec.precision import float32_only
from mtbranch.trunk.families import record_for

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_DTYPE_HINT = ("the exported graph and its ONNX Runtime check are float32 (ONNX Runtime's CPU provider has no "
                   "bf16 matmul kernels); run bf16 in PyTorch instead: mtbranch serve/predict --dtype bfloat16")
INFO_NAME = "onnx.json"
CHECK_TEXTS = [
    "a gripping, beautifully acted film that I would happily watch again",
    "bad",
    "Angela Merkel met Emmanuel Macron in Paris to discuss the future of the European Union .",
    "the plot is a mess and the jokes fall flat",
    "",
]
CHECK_PAIRS = ["A man is playing a guitar on stage.", "good", "Two leaders met in France.", "a great film", "x"]


class OnnxGraph(nn.Module):
    """The composed forward for a fixed list of branches, returning a tuple (ONNX outputs are positional)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.task_names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, token_type_ids)
        return tuple(out[n] for n in self.names)


def encode(model: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> dict[str, torch.Tensor]:
    """The three graph inputs for ``texts`` (and ``pairs``), as the composed model's predict tokenizes them."""
    enc = model.tokenize(texts, pairs, max_length, offsets=False)
    ids = enc["input_ids"]
    tt = enc.get("token_type_ids")
    return {"input_ids": ids, "attention_mask": enc["attention_mask"],
            "token_type_ids": tt if tt is not None else torch.zeros_like(ids)}


def _output_info(model: Any) -> list[dict[str, Any]]:
    out = []
    for b in model.branches:
        spec = b.head_spec
        n = getattr(b.head, "classifier", None)
        width = n.out_features if isinstance(n, nn.Linear) else None
        out.append({"name": b.name, "version": b.manifest.version, "head": spec.type,
                    "signature": b.manifest.tokenizer.input_signature,
                    "max_length": b.manifest.tokenizer.max_length,
                    "labels": list(getattr(spec, "labels", None) or []) or None,
                    "shape": ["batch", width] if b.sequence_level else ["batch", "sequence", width]})
    return out


MIN_OPSET = 18  # the dynamo exporter's torchlib opset


def check_opset(opset: int | None) -> None:
    """An opset the exporter can write and the installed onnx knows (``--opset 999`` is refused up front)."""
    if opset is None:
        return
    import onnx

    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise MtbranchError(f"--opset {opset} is outside {MIN_OPSET}..{top} (the exporter's first opset .. the "
                            f"newest the installed onnx {onnx.__version__} knows)",
                            hint="leave --opset out for the exporter's default")


def export_onnx(model: Any, out: str | os.PathLike[str], *, opset: int | None = None,
                dtype: str = "float32") -> dict[str, Any]:
    """Write ``out/model.onnx``, ``out/onnx.json`` (outputs, labels, signatures) and the tokenizer files.

    The model is exported in float32 (a half-precision model is converted in place); ``dtype`` other than
    float32 / auto is refused (:data:`ONNX_DTYPE_HINT`).
    """
    float32_only(dtype, "ONNX export", ONNX_DTYPE_HINT)
    check_opset(opset)
    names = model.task_names
    if not names:
        raise MtbranchError("the model has no branches to export")
    shared = [b.name for b in model.branches if b.shared_pair]
    if shared:  # the graph's one forward per signature cannot run a pair's two texts apart
        raise MtbranchError(f"task(s) {', '.join(shared)} read their pair texts apart (pair_mode 'shared'): the "
                            "ONNX export does not cover them", hint="export a model composed without them "
                            "(ONNX Runtime serving runs them in torch: `mtbranch serve --backend ort`)")
    family = record_for(model.trunk.config.model_type)
    if not family.onnx:
        raise MtbranchError(f"ONNX export is not supported for the {family.name} trunk family yet",
                            hint="serve it with `mtbranch serve` or mtbranch.load (PyTorch); a family plugin enables "
                                 "export-onnx by declaring onnx=True once checked (docs/families.md)")
    clash = [n for n in names if n in INPUTS]
    if clash:
        raise MtbranchError(f"task name {clash[0]!r} equals an ONNX input name", hint="export without that task")
    model = model.float().eval()
    graph = OnnxGraph(model).eval()
    ml = model.max_length(model.branches)
    example = encode(model, CHECK_TEXTS[:2], None, ml)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    info = {"format": 1, "inputs": list(INPUTS), "outputs": _output_info(model),
            "max_length": ml, "torch": torch.__version__, "exporter": "torch.onnx.export(dynamo=True)",
            "artifact_lock": None if model.lock is None else {"created": model.lock.created,
                                                              "mtbranch_version": model.lock.mtbranch_version}}
    with atomic_directory(out, kind="onnx", inputs=[model.provenance.artifact_root]) as tmp, \
            warnings.catch_warnings():
        # exporter noise about axis names shared by the three inputs and a pytree deprecation: not actionable
        warnings.filterwarnings("ignore", message=r".*(axis name|LeafSpec).*")
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision ops
        program = torch.onnx.export(
            graph, tuple(example[k] for k in INPUTS), str(tmp / "model.onnx"), input_names=list(INPUTS),
            output_names=names, dynamic_shapes={k: {0: batch, 1: seq} for k in INPUTS}, opset_version=opset,
            dynamo=True, external_data=False, verbose=False)
        info["opset"] = _opset_of(program)
        model.tokenizer.save_pretrained(str(tmp))
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _opset_of(program: Any) -> int | None:
    try:
        return int(program.model.opset_imports[""])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def session(onnx_dir: str | os.PathLike[str], threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(Path(onnx_dir) / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def check_onnx(model: Any, onnx_dir: str | os.PathLike[str], texts: list[str] | None = None,
               pairs: list[str] | None = None) -> dict[str, float]:
    """Max abs difference ONNX Runtime vs PyTorch per task, each on the encoding of its own signature.

    Token-level outputs are compared at real tokens only: padding positions are never read.
    """
    texts = texts or CHECK_TEXTS
    pairs = pairs or CHECK_PAIRS[: len(texts)]
    sess = session(onnx_dir)
    order = [o.name for o in sess.get_outputs()]
    ml = model.max_length(model.branches)
    diffs: dict[str, float] = {}
    for signature, p in (("single", None), ("pair", pairs)):
        wanted = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == signature]
        if not wanted:
            continue
        enc = encode(model, texts, p, ml)
        ref = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        got = dict(zip(order, sess.run(None, {k: v.numpy() for k, v in enc.items()}), strict=True))
        real = enc["attention_mask"].bool()
        for name in wanted:
            diff = (torch.from_numpy(got[name]) - ref[name].float()).abs()
            # token outputs at padding positions are never read (predict drops them): compare real tokens
            diffs[name] = float(diff[real].max() if diff.dim() == 3 else diff.max())
    return diffs


def _dims(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape[1:]]  # Triton's dims leave out the batch axis


def triton_config(name: str, sess: Any, *, max_batch_size: int = 32, queue_delay_us: int = 5000) -> str:
    """config.pbtxt for Triton's ONNX Runtime backend (batch axis implicit, dynamic batching on)."""
    def tensor(t: Any, dtype: str) -> str:
        dims = ", ".join(str(d) for d in _dims(list(t.shape)))
        return f'  {{\n    name: "{t.name}"\n    data_type: {dtype}\n    dims: [ {dims} ]\n  }}'

    inputs = ",\n".join(tensor(t, "TYPE_INT64") for t in sess.get_inputs())
    outputs = ",\n".join(tensor(t, "TYPE_FP32") for t in sess.get_outputs())
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n")


def write_triton_repository(onnx_dir: str | os.PathLike[str], repo: str | os.PathLike[str], *,
                            name: str = "mtbranch", max_batch_size: int = 32,
                            inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """``repo/name/config.pbtxt`` and ``repo/name/1/model.onnx``; only that model directory is replaced (never
    the ONNX export it copies, nor ``inputs``: the artifact the export came from)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise MtbranchError(f"Triton model name {name!r} has characters Triton does not accept",
                            hint="use letters, digits, '_', '-', '.'")
    src = Path(onnx_dir)
    sess = session(src)
    target = Path(repo) / name
    with atomic_directory(target, kind="triton", inputs=[src, *inputs]) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(src / "model.onnx", tmp / "1" / "model.onnx")
        (tmp / "config.pbtxt").write_text(triton_config(name, sess, max_batch_size=max_batch_size),
                                          encoding="utf-8")
    return target
