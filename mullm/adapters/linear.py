"""One linear map per pooled frame (MusiLingo, LLark)."""

from __future__ import annotations

import torch
from torch import nn

from mullm.adapters.base import Adapter
from mullm.config import AdapterConfig


class LinearAdapter(Adapter):
    """Linear(in_dim, out_dim) on every pooled frame; one token per pooled frame."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__(config, in_dim, out_dim, frame_rate)
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(in_dim, out_dim)

    def tokens_from_frames(self, feats: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project each pooled frame to one token."""
        return self.proj(self.dropout(feats)), mask
