"""The bench scenarios: which branches (depth, layers, head) on which trunk, as the paper allocates them.

Plain data and layer arithmetic, no torch: ``expected_layers`` is the paper's overhead metric computed from the
plan alone, which the measured setups (:mod:`mtbranch.bench.setups`) must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtbranch.spec.heads import CLASSIFICATION


@dataclass(frozen=True)
class BranchPlan:
    name: str
    depth: int
    layers: int
    head: str = CLASSIFICATION  # a built-in head type name (mtbranch.spec.heads)
    labels: int = 2


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    branches: tuple[BranchPlan, ...] = ()
    trunk: dict[str, int] = field(default_factory=dict)  # synthetic BERT config; empty = installed plugins
    subset_task: str | None = None
    reference_task: str | None = None
    family: str = "bert"  # trunk family of the synthetic trunk (`mtbranch bench --family`), same dimensions

    @property
    def synthetic(self) -> bool:
        return bool(self.trunk)


BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512}

SCENARIOS: dict[str, Scenario] = {
    "paper-mixed": Scenario(
        "paper-mixed",
        "8 GLUE-like branches with the (depth, layers) of the paper's Table 2 'Ours (mixed)' on a 12-layer, "
        "768-hidden trunk: 7 + 26 = 33 of 96 layers",
        branches=(BranchPlan("qnli", 2, 3), BranchPlan("rte", 7, 5), BranchPlan("qqp", 2, 1),
                  BranchPlan("mnli", 4, 3, labels=3), BranchPlan("sst2", 6, 2), BranchPlan("mrpc", 7, 3),
                  BranchPlan("cola", 4, 8), BranchPlan("stsb", 4, 1, head="regression", labels=1)),
        trunk=BERT_BASE, subset_task="qqp", reference_task="cola"),
    "xiaoai-21": Scenario(
        "xiaoai-21",
        "21 branches on 8 shared frozen layers, 40 layers in all (paper, appendix E): 11 tasks with 2 layers, "
        "10 with 1, on a 12-layer, 768-hidden trunk",
        branches=tuple(BranchPlan(f"task{i:02d}", 8, 2 if i < 11 else 1) for i in range(21)),
        trunk=BERT_BASE, subset_task="task20", reference_task="task00"),
    "real": Scenario("real", "the installed example plugins' branches on their installed trunk (real weights)"),
}


def expected_layers(scenario: Scenario) -> dict[str, int]:
    """Transformer layers each setup runs to answer every task once, from the plan alone (no model built).

    composed: the trunk once to the deepest attach depth (all synthetic branches read one input signature) plus
    every branch's layers; standalone: each task's trunk prefix + its branch; full: a whole trunk per task.
    """
    plans = scenario.branches
    return {"composed": max(p.depth for p in plans) + sum(p.layers for p in plans),
            "standalone": sum(p.depth + p.layers for p in plans),
            "full": scenario.trunk["num_hidden_layers"] * len(plans)}
