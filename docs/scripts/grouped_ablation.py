"""Ablation: grouping same-shape branches at one depth into batched matmuls (issue 6, speed work item).

    python docs/scripts/grouped_ablation.py --threads 1 --rounds 5

The `xiaoai-21` branch shape (21 branches forked at one depth of a 768-hidden BERT trunk, 11 with 2 layers and
10 with 1) run two ways on the same hidden states: (a) as mtbranch runs them, each branch's transformers
``BertLayer`` in turn; (b) grouped: every branch's weights stacked per layer index, the first layer's Q/K/V as
one GEMM over the shared input with the 21 weight matrices concatenated, the rest as ``torch.baddbmm`` over the
stacked weights, attention as one SDPA call over branches x batch. Prints the max abs difference (the grouped
path must compute the same function) and the median time of each, interleaved per round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer


def stack(layers: list[Any]) -> dict[str, Any]:
    """The layers' weights stacked along a new first dimension, transposed to [G, in, out] for baddbmm."""
    att = [x.attention for x in layers]
    col = lambda mods: torch.stack([m.weight.t() for m in mods]).contiguous()  # noqa: E731
    vec = lambda ts: torch.stack(list(ts))[:, None]  # noqa: E731  [G, 1, n]: broadcasts over tokens
    qkv = torch.stack([torch.cat([a.self.query.weight, a.self.key.weight, a.self.value.weight]).t() for a in att])
    return {"qkv": qkv.contiguous(), "bqkv": vec(torch.cat([a.self.query.bias, a.self.key.bias, a.self.value.bias])
                                                  for a in att),
            "wo": col([a.output.dense for a in att]), "bo": vec(a.output.dense.bias for a in att),
            "g1": vec(a.output.LayerNorm.weight for a in att), "b1": vec(a.output.LayerNorm.bias for a in att),
            "wi": col([x.intermediate.dense for x in layers]), "bi": vec(x.intermediate.dense.bias for x in layers),
            "wo2": col([x.output.dense for x in layers]), "bo2": vec(x.output.dense.bias for x in layers),
            "g2": vec(x.output.LayerNorm.weight for x in layers), "b2": vec(x.output.LayerNorm.bias for x in layers),
            "eps": layers[0].output.LayerNorm.eps}


def grouped_layer(x: torch.Tensor, p: dict[str, Any], batch: int, seq: int, heads: int,
                  shared: bool) -> torch.Tensor:
    """G post-LN BERT layers at once; ``x`` is [batch, seq, H] when shared, else [G, batch*seq, H]."""
    g, h = p["qkv"].shape[0], p["qkv"].shape[1]
    if shared:  # one input for every branch: one GEMM against the concatenated weights
        flat = x.reshape(batch * seq, h)
        qkv = (flat @ p["qkv"].permute(1, 0, 2).reshape(h, -1)).view(batch * seq, g, 3 * h).transpose(0, 1)
        qkv = qkv + p["bqkv"]
        x = flat.expand(g, batch * seq, h)
    else:
        qkv = torch.baddbmm(p["bqkv"], x, p["qkv"])
    dh = h // heads
    qkv = qkv.view(g, batch, seq, 3, heads, dh).permute(3, 0, 1, 4, 2, 5).reshape(3, g * batch, heads, seq, dh)
    ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    ctx = ctx.view(g, batch, heads, seq, dh).permute(0, 1, 3, 2, 4).reshape(g, batch * seq, h)
    a = F.layer_norm(torch.baddbmm(p["bo"], ctx, p["wo"]) + x, (h,), eps=p["eps"]) * p["g1"] + p["b1"]
    inner = F.gelu(torch.baddbmm(p["bi"], a, p["wi"]))
    return F.layer_norm(torch.baddbmm(p["bo2"], inner, p["wo2"]) + a, (h,), eps=p["eps"]) * p["g2"] + p["b2"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--batch-sizes", default="1,8,32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072)
    cfg._attn_implementation = "sdpa"
    two, one = 11, 10
    branches = [[BertLayer(cfg).eval() for _ in range(2)] for _ in range(two)]
    branches += [[BertLayer(cfg).eval()] for _ in range(one)]
    first, second = stack([b[0] for b in branches]), stack([b[1] for b in branches[:two]])

    def separate(x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layers in branches:
            h = x
            for layer in layers:
                r = layer(h)
                h = r[0] if isinstance(r, tuple) else r
            outs.append(h)
        return outs

    def grouped(x: torch.Tensor) -> list[torch.Tensor]:
        b, t, _ = x.shape
        h0 = grouped_layer(x, first, b, t, cfg.num_attention_heads, shared=True)
        h1 = grouped_layer(h0[:two].contiguous(), second, b, t, cfg.num_attention_heads, shared=False)
        return [h1[g].view(b, t, -1) for g in range(two)] + [h0[two + g].view(b, t, -1) for g in range(one)]

    rows = []
    for bs in (int(v) for v in args.batch_sizes.split(",")):
        x = torch.randn(bs, args.seq_len, cfg.hidden_size)
        with torch.inference_mode():
            diff = max((p - q).abs().max().item() for p, q in zip(separate(x), grouped(x), strict=True))
            times: dict[str, list[float]] = {"separate": [], "grouped": []}
            for _ in range(args.rounds):
                for name, fn in (("separate", separate), ("grouped", grouped)):
                    t0 = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"batch_size": bs, "seq_len": args.seq_len, "max_abs_diff": diff,
                     "separate_ms": 1e3 * med["separate"], "grouped_ms": 1e3 * med["grouped"],
                     "grouped_speedup": med["separate"] / med["grouped"]})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
