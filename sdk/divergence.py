"""Nothing diverged ships: training stops at the first non-finite loss or weight, naming the epoch and step.

transformers' Trainer replaces a NaN/Inf step loss by the running average (``logging_nan_inf_filter``) and
keeps going, so a run at ``lr 1e30`` used to finish with NaN metrics and export NaN weights. The checks here
run inside the loop (one device sync per step, as Trainer's own filter already costs) and again on the state
about to be exported.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import torch

from mtbranch.errors import MtbranchError

HINT = ("lower the learning rate (--lr / --head-lr, recipe train.lr), check the data for extreme values, "
        "or keep the default hyperparameters; nothing was exported")


class TrainingDiverged(MtbranchError):
    """The loss or the weights stopped being finite numbers during training."""


def where(state: Any) -> str:
    """``epoch 1.50, step 12`` from a Trainer state (the step under way)."""
    return f"epoch {float(state.epoch or 0):.2f}, step {int(state.global_step) + 1}"


def check_loss(loss: torch.Tensor, state: Any) -> None:
    if not bool(torch.isfinite(loss.detach()).all()):
        raise TrainingDiverged(f"training diverged ({where(state)}): the loss is {loss.detach().float().item()}",
                               hint=HINT)


def non_finite(module: torch.nn.Module) -> list[str]:
    """Names of the parameters (and buffers) holding NaN or Inf: one device sync for all of them."""
    named = [(n, t) for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point()]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t.detach()).all() for _, t in named]).tolist()
    return [n for (n, _), good in zip(named, ok, strict=True) if not good]


def check_weights(module: torch.nn.Module, at: str) -> None:
    """``at``: where training stands (``epoch 1.00, step 8``), or what is being checked (``the state to export``)."""
    bad = non_finite(module)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise TrainingDiverged(f"training diverged ({at}): weights {', '.join(bad[:3])}{more} are not finite "
                               "(NaN/Inf)", hint=HINT)


def guard_callback() -> Any:
    """A TrainerCallback that checks the model's weights after every optimizer step."""
    from transformers import TrainerCallback

    class StopOnDivergence(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if model is not None:
                # global_step already counts the step just taken
                check_weights(model, f"epoch {float(state.epoch or 0):.2f}, step {int(state.global_step)}")

    return StopOnDivergence()


def check_config(cfg: Any) -> None:
    """Every float of a TrainConfig finite (the CLI and recipes check ranges; this catches Python callers)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise MtbranchError(f"TrainConfig.{f.name} is {value}: it must be a finite number",
                                hint="pass a finite value (the defaults are in mtbranch.sdk.train.TrainConfig)")
