"""Sharing the single-text pass with the pair tasks, as an experiment: a pair head over both texts' pooled
single-text outputs ([u, v, |u-v|, u*v], siamese) vs the normal pair branch (both texts in one joint pass), same
attach depth, layers, initialisation, data and epochs, on STS-B and MRPC.

    python docs/scripts/shared_pair_pass.py out/composed --train 2000 --epochs 2 --threads 1 \\
        --json docs/benchmarks/shared-pair-pass.json

Both variants train 2 layers attached at depth 4 of the composed model's frozen MiniLM trunk (initialised from
trunk layers 5-6, as the SDK does), mean pooling, a linear head; AdamW (layers 1e-4, head 1e-3), batch 32, seed 0.
Trunk features at depth 4 are computed once (joint pairs; each text alone). Dev: STS-B dev (Pearson), MRPC dev
(accuracy). Speed: the pair task's own cost per pair once the request's text has had its single-text pass (what
a composed model running single-text tasks already pays): joint = trunk to depth 4 over text+pair, then the 2
layers; shared = trunk to depth 4 over the pair text alone, then the 2 layers over each text; interleaved rounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_branches import DATA

DEPTH, LAYERS = 4, 2


def load_task(name: str, n_train: int) -> tuple[list[Any], list[Any], str]:
    from mtbranch.sdk.data import TableSpec, load_table_data

    if name == "stsb":
        spec = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
        tr, dv = DATA / "STS-B" / "sts-train.csv", DATA / "STS-B" / "sts-dev.csv"
        kind = "regression"
    else:
        spec = TableSpec(text="#1 String", pair="#2 String", label="Quality", quote_none=True)
        tr, dv = DATA / "MRPC" / "train.tsv", DATA / "MRPC" / "dev.tsv"
        kind = "classification"
    train = load_table_data(tr, spec).examples
    rng = np.random.default_rng(0)
    train = [train[i] for i in sorted(rng.choice(len(train), min(n_train, len(train)), replace=False))]
    return train, load_table_data(dv, spec).examples, kind


def features(model: Any, enc: list[tuple[list[int], list[int]]], batch: int = 64) -> list[Any]:
    """Hidden states after trunk layer DEPTH, one (tokens x hidden) tensor per input."""
    import torch

    from mtbranch.sdk.features import pad_ids

    trunk = model.trunk
    order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))
    out: list[Any] = [None] * len(enc)
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            h, _ = _trunk(trunk, [enc[i][0] for i in idx], [enc[i][1] for i in idx], pad_ids)
            for j, i in enumerate(idx):
                out[i] = h[j, : len(enc[i][0])].clone()
    return out


def _trunk(trunk: Any, ids: list[list[int]], types: list[list[int]], pad_ids: Any) -> tuple[Any, Any]:
    x, mask = pad_ids(ids, 0), pad_ids([[1] * len(r) for r in ids], 0)
    h = trunk.embed(x, pad_ids(types, 0), mask)
    m4 = trunk.mask(h, mask)
    for k in range(1, DEPTH + 1):
        h = trunk.run_layer(k, h, m4)
    return h, mask


class PairModel:
    """The 2 layers + mean pooling + head; ``shared``: the head reads [u, v, |u-v|, u*v] of each text alone."""

    def __init__(self, model: Any, n_out: int, shared: bool) -> None:
        import torch
        from torch import nn

        torch.manual_seed(0)
        self.trunk = model.trunk
        self.layers = copy.deepcopy(model.trunk.layers[DEPTH:DEPTH + LAYERS])
        for p in self.layers.parameters():
            p.requires_grad_(True)  # the trunk's copy was frozen
        hidden = model.trunk.config.hidden_size
        self.head = nn.Linear(hidden * (4 if shared else 1), n_out)
        self.shared = shared

    def pooled(self, hs: list[Any]) -> Any:
        import torch

        width = max(h.shape[0] for h in hs)
        x = torch.zeros(len(hs), width, hs[0].shape[1])
        mask = torch.zeros(len(hs), width, dtype=torch.long)
        for i, h in enumerate(hs):
            x[i, : h.shape[0]], mask[i, : h.shape[0]] = h, 1
        m4 = self.trunk.mask(x, mask)
        for i, layer in enumerate(self.layers):
            x = self.trunk.family.run_layer(layer, DEPTH + i, x, m4)
        w = mask.unsqueeze(-1).float()
        return (x * w).sum(1) / w.sum(1)

    def __call__(self, joint: list[Any], a: list[Any], b: list[Any]) -> Any:
        import torch

        if not self.shared:
            return self.head(self.pooled(joint))
        u, v = self.pooled(a), self.pooled(b)
        return self.head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))

    def parameters(self) -> list[dict[str, Any]]:
        return [{"params": list(self.layers.parameters()), "lr": 1e-4}, {"params": list(self.head.parameters()),
                                                                         "lr": 1e-3}]

    def train(self, on: bool) -> None:
        self.layers.train(on)
        self.head.train(on)


def run_task(model: Any, name: str, n_train: int, epochs: int) -> dict[str, Any]:
    import torch
    from scipy.stats import pearsonr

    train, dev, kind = load_task(name, n_train)
    tok = model.tokenizer

    def enc(xs: list[str], ps: list[str] | None = None) -> list[tuple[list[int], list[int]]]:
        e = tok(xs, ps, truncation=True, max_length=128)
        types = e.get("token_type_ids") or [[0] * len(r) for r in e["input_ids"]]
        return list(zip(e["input_ids"], types, strict=True))

    data = {}
    t0 = time.perf_counter()
    for split, ex in (("train", train), ("dev", dev)):
        a, b = [e.text for e in ex], [e.pair for e in ex]
        data[split] = (features(model, enc(a, b)), features(model, enc(a)), features(model, enc(b)),
                       [float(e.label) if kind == "regression" else int(e.label) for e in ex])
    feat_s = time.perf_counter() - t0
    res: dict[str, Any] = {"task": name, "train": len(train), "dev": len(dev), "feature_seconds": feat_s}
    for shared in (False, True):
        pm = PairModel(model, 1 if kind == "regression" else 2, shared)
        opt = torch.optim.AdamW(pm.parameters())
        joint, a, b, y = data["train"]
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(epochs):
            pm.train(True)
            perm = rng.permutation(len(y))
            for s in range(0, len(y), 32):
                idx = perm[s:s + 32].tolist()
                out = pm([joint[i] for i in idx], [a[i] for i in idx], [b[i] for i in idx])
                target = torch.tensor([y[i] for i in idx])
                loss = (torch.nn.functional.mse_loss(out.squeeze(-1), target.float()) if kind == "regression"
                        else torch.nn.functional.cross_entropy(out, target))
                opt.zero_grad()
                loss.backward()
                opt.step()
        train_s = time.perf_counter() - t0
        pm.train(False)
        dj, da, db, dy = data["dev"]
        with torch.inference_mode():
            outs = torch.cat([pm(dj[s:s + 64], da[s:s + 64], db[s:s + 64]) for s in range(0, len(dy), 64)])
        if kind == "regression":
            metric = {"pearson": 100 * float(pearsonr(outs.squeeze(-1).numpy(), np.asarray(dy))[0])}
        else:
            metric = {"accuracy": 100 * float((outs.argmax(-1).numpy() == np.asarray(dy)).mean())}
        res["shared" if shared else "joint"] = {**metric, "train_seconds": train_s, "model": pm}
    res["speed"] = speed(model, dev, res["joint"]["model"], res["shared"]["model"], enc)
    for k in ("joint", "shared"):
        del res[k]["model"]
    return res


def speed(model: Any, dev: list[Any], joint: PairModel, shared: PairModel, enc: Any, rounds: int = 3
          ) -> dict[str, float]:
    """Seconds per dev pair of the pair task's own work (the text's single-text pass already paid)."""
    import torch

    from mtbranch.sdk.features import pad_ids

    ex = dev[:128]
    jenc, aenc, benc = enc([e.text for e in ex], [e.pair for e in ex]), enc([e.text for e in ex]), \
        enc([e.pair for e in ex])
    a_feats = features(model, aenc)  # paid by the single-text tasks already

    def run_joint() -> None:
        for s in range(0, len(ex), 32):
            h, mask = _trunk(model.trunk, [r[0] for r in jenc[s:s + 32]], [r[1] for r in jenc[s:s + 32]], pad_ids)
            joint([h[j, : int(mask[j].sum())] for j in range(h.shape[0])], [], [])

    def run_shared() -> None:
        for s in range(0, len(ex), 32):
            h, mask = _trunk(model.trunk, [r[0] for r in benc[s:s + 32]], [r[1] for r in benc[s:s + 32]], pad_ids)
            shared([], a_feats[s:s + 32], [h[j, : int(mask[j].sum())] for j in range(h.shape[0])])

    times: dict[str, list[float]] = {"joint": [], "shared": []}
    with torch.inference_mode():
        run_joint(), run_shared()
        for _ in range(rounds):
            for k, fn in (("joint", run_joint), ("shared", run_shared)):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) / len(ex) for k, v in times.items()}
    return {"joint_s_per_pair": med["joint"], "shared_s_per_pair": med["shared"],
            "shared_vs_joint_speed": med["joint"] / med["shared"]}


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.artifact)
    for p in model.parameters():
        p.requires_grad_(False)
    rows = [run_task(model, t, args.train, args.epochs) for t in ("stsb", "mrpc")]
    out = {"command": "python docs/scripts/shared_pair_pass.py " + " ".join(sys.argv[1:]), "depth": DEPTH,
           "layers": LAYERS, "epochs": args.epochs, "threads": args.threads,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "load": Path("/proc/loadavg").read_text().split()[:3], "tasks": rows}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
