"""The built-in head types' losses: hard-label and soft-target (distillation) ones. Torch is imported inside each
function, so looking up a task (reading its data) imports none.

Soft targets: KL(teacher || student) at temperature T scaled by T^2 (Hinton et al.), MSE for regression.
"""

from __future__ import annotations

from typing import Any

from mtbranch.sdk.metrics import IGNORE_INDEX


def cross_entropy(out: Any, labels: Any) -> Any:
    """Class ids (or one per token; ``IGNORE_INDEX`` where no tag is scored)."""
    from torch.nn import functional as F

    # ids past the head's labels are dev labels training never saw: no loss, scored as misses by the metrics
    labels = labels.masked_fill(labels >= out.shape[-1], IGNORE_INDEX)
    return F.cross_entropy(out.view(-1, out.shape[-1]), labels.view(-1), ignore_index=IGNORE_INDEX)


def mse(out: Any, labels: Any) -> Any:
    from torch.nn import functional as F

    return F.mse_loss(out.view(-1), labels.view(-1).float())


def soft_mse(out: Any, teacher: Any, labels: Any, temperature: float) -> Any:
    from torch.nn import functional as F

    return F.mse_loss(out, teacher)


def _kl(s: Any, t: Any, temperature: float) -> Any:
    from torch.nn import functional as F

    log_p = F.log_softmax(s / temperature, dim=-1)
    q = F.softmax(t / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def soft_kl(out: Any, teacher: Any, labels: Any, temperature: float) -> Any:
    return _kl(out.reshape(-1, out.shape[-1]), teacher.reshape(-1, teacher.shape[-1]), temperature)


def soft_kl_tokens(out: Any, teacher: Any, labels: Any, temperature: float) -> Any:
    """KL over the positions that carry a word's tag only."""
    keep = labels.reshape(-1) != IGNORE_INDEX
    return _kl(out.reshape(-1, out.shape[-1])[keep], teacher.reshape(-1, teacher.shape[-1])[keep], temperature)
