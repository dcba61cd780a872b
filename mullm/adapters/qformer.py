"""BLIP-2 style Q-Former: learned queries read the whole clip through cross-attention.

Pre-norm layers (self-attention over the queries, cross-attention to the frames on every
``cross_attention_every``-th layer, FFN) are more stable to train from scratch than BERT's
post-norm. The clip gets exactly ``num_queries`` tokens whatever its length.
"""

from __future__ import annotations

import torch
from torch import nn

from mullm.adapters.base import QueryAdapter
from mullm.config import AdapterConfig
from mullm.errors import ConfigError


class FeedForward(nn.Module):
    """Pre-norm GELU FFN with 4x expansion, returned as a residual update."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(4 * dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the update for (..., dim)."""
        return self.net(x)


class QFormerLayer(nn.Module):
    """Self-attention over queries, optional cross-attention to frames, then an FFN."""

    def __init__(self, dim: int, num_heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout,
                                               batch_first=True)
        self.cross = cross
        if cross:
            self.cross_norm = nn.LayerNorm(dim)
            self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout,
                                                    batch_first=True)
        self.ffn = FeedForward(dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor) -> torch.Tensor:
        """Update (B, Q, dim) queries from (B, T, dim) memory; ``memory_mask`` True = real."""
        h = self.self_norm(queries)
        queries = queries + self.dropout(self.self_attn(h, h, h, need_weights=False)[0])
        if self.cross:
            h = self.cross_norm(queries)
            attn = self.cross_attn(h, memory, memory, key_padding_mask=~memory_mask,
                                   need_weights=False)[0]
            queries = queries + self.dropout(attn)
        return queries + self.ffn(queries)


class QFormerStack(nn.Module):
    """Learned queries plus Q-Former layers; maps memory (B, T, dim) to (B, Q, dim)."""

    def __init__(self, num_queries: int, dim: int, num_layers: int, num_heads: int,
                 cross_every: int, dropout: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.layers = nn.ModuleList(
            QFormerLayer(dim, num_heads, dropout, cross=(i % cross_every == 0))
            for i in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Read ``memory`` (every row needs at least one True in ``memory_mask``)."""
        queries = self.queries.expand(memory.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, memory, memory_mask)
        return self.norm(queries)


class QFormerAdapter(QueryAdapter):
    """BLIP-2 Q-Former over the whole (pooled) clip: ``num_queries`` tokens per clip."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__(config, in_dim, out_dim, frame_rate)
        hidden = config.hidden_size
        if not 1 <= config.cross_attention_every <= config.num_layers:
            raise ConfigError(
                f"adapter.cross_attention_every={config.cross_attention_every} must be "
                f"between 1 and num_layers={config.num_layers}"
            )
        self.in_proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden),
                                     nn.Dropout(config.dropout))
        self.qformer = QFormerStack(config.num_queries, hidden, config.num_layers,
                                    config.num_heads, config.cross_attention_every,
                                    config.dropout)
        self.out_proj = nn.Linear(hidden, out_dim)

    def read_clip(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Let the queries read the clip (one token each)."""
        return self.out_proj(self.qformer(self.in_proj(feats), mask))
