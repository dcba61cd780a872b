"""MLP projectors: a GELU stack (LLaVA-1.5 style) or MU-LLaMA's residual SwiGLU blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mullm.adapters.base import Adapter
from mullm.config import AdapterConfig
from mullm.errors import ConfigError


class SwiGLUBlock(nn.Module):
    """Pre-norm residual SwiGLU block: x + W2(silu(W1 n(x)) * W3 n(x))."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim)
        # The inner width equals the block width, as in MU-LLaMA's square projections;
        # a wider block is a larger hidden_size.
        self.w1 = nn.Linear(dim, dim)
        self.w3 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to (..., dim)."""
        h = self.norm(x)
        return x + self.dropout(self.w2(F.silu(self.w1(h)) * self.w3(h)))


class MLPAdapter(Adapter):
    """Per-token MLP; ``mlp_style`` picks the GELU stack or the SwiGLU residual stack."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__(config, in_dim, out_dim, frame_rate)
        hidden, n = config.hidden_size, config.num_layers
        if config.mlp_style == "gelu":
            widths = [in_dim] + [hidden] * (n - 1) + [out_dim]
            layers: list[nn.Module] = []
            for i in range(n):
                layers.append(nn.Linear(widths[i], widths[i + 1]))
                if i < n - 1:
                    layers += [nn.GELU(), nn.Dropout(config.dropout)]
            self.net = nn.Sequential(*layers)
        elif config.mlp_style == "swiglu":
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                *[SwiGLUBlock(hidden, config.dropout) for _ in range(n)],
                nn.RMSNorm(hidden),
                nn.Linear(hidden, out_dim),
            )
        else:
            raise ConfigError(
                f"adapter.mlp_style={config.mlp_style!r} is not one of 'gelu', 'swiglu'"
            )

    def tokens_from_frames(self, feats: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map each pooled frame to one token."""
        return self.net(feats), mask
