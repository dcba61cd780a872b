"""Flamingo Perceiver resampler: learned latents attend to [frames; latents].

Letting the latents attend to themselves alongside the frames (Flamingo's choice) also
means no latent ever faces an all-masked key set.
"""

from __future__ import annotations

import torch
from torch import nn

from mullm.adapters.base import QueryAdapter
from mullm.adapters.qformer import FeedForward
from mullm.config import AdapterConfig


class PerceiverLayer(nn.Module):
    """Latents attend to concat(frames, latents) with padded frames masked, then an FFN."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.media_norm = nn.LayerNorm(dim)
        self.latent_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = FeedForward(dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, latents: torch.Tensor, media: torch.Tensor,
                media_mask: torch.Tensor) -> torch.Tensor:
        """Update (B, Q, dim) latents from (B, T, dim) media; ``media_mask`` True = real."""
        lat = self.latent_norm(latents)
        kv = torch.cat([self.media_norm(media), lat], dim=1)
        keep = torch.cat([media_mask, media_mask.new_ones(lat.shape[:2])], dim=1)
        attn = self.attn(lat, kv, kv, key_padding_mask=~keep, need_weights=False)[0]
        latents = latents + self.dropout(attn)
        return latents + self.ffn(latents)


class PerceiverAdapter(QueryAdapter):
    """Perceiver resampler: ``num_queries`` tokens per clip."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__(config, in_dim, out_dim, frame_rate)
        hidden = config.hidden_size
        self.in_proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.Dropout(config.dropout))
        self.latents = nn.Parameter(torch.randn(config.num_queries, hidden) * 0.02)
        self.layers = nn.ModuleList(
            PerceiverLayer(hidden, config.num_heads, config.dropout)
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, out_dim)

    def read_clip(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Resample the clip into the latents (one token each)."""
        media = self.in_proj(feats)
        latents = self.latents.expand(feats.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, media, mask)
        return self.out_proj(self.norm(latents))
