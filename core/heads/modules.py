"""Torch modules of the built-in heads (imported only when a head is built)."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    def __init__(self, hidden: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x))
