"""The adapter contract: encoder frames (B, T, in_dim) + mask -> LLM tokens (B, N, out_dim).

Every adapter first standardises its input frames when ``config.input_norm`` asks for it
(``mullm.adapters.input_norm``), pools them by ``config.pool`` (mask-aware), then maps the pooled
frames to tokens. With ``config.global_tokens = K`` the row starts with K summary tokens made
from the clip's mean and standard deviation over all valid frames. Valid tokens come first
in each row, and ``num_tokens`` says exactly how many a clip gets, so the processor can size
placeholders before anything is encoded.
"""

from __future__ import annotations

import torch
from torch import nn

from mullm.adapters.input_norm import InputStandardizer
from mullm.adapters.pooling import left_align, pool_group, pooled_length, temporal_pool
from mullm.config import AdapterConfig
from mullm.errors import ConfigError


class Adapter(nn.Module):
    """Base class: subclasses implement ``tokens_from_frames`` and, if needed, ``num_tokens``."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ConfigError(f"in_dim={in_dim} and out_dim={out_dim} must both be >= 1")
        self.config = config
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.frame_rate = float(frame_rate)
        self.pool_group = pool_group(config, self.frame_rate)
        self.summary = ClipSummary(in_dim, config.hidden_size, out_dim, config.global_tokens) \
            if config.global_tokens > 0 else None
        self.input_norm = InputStandardizer(in_dim) if config.input_norm == "standardize" \
            else None

    def num_pooled(self, num_frames: int) -> int:
        """Frames left after pooling a clip of ``num_frames`` valid frames."""
        return pooled_length(num_frames, self.config.pool, self.pool_group)

    def num_tokens(self, num_frames: int) -> int:
        """Exact count of valid tokens for a clip with ``num_frames`` valid frames."""
        return type(self).count_tokens(self.config, self.frame_rate, num_frames)

    @classmethod
    def count_tokens(cls, config: AdapterConfig, frame_rate: float, num_frames: int) -> int:
        """Tokens this adapter class emits for ``num_frames`` valid frames at ``frame_rate``
        frames/s, from the config alone (the processor sizes placeholders with it).

        Raises:
            ValueError: ``num_frames`` < 1.
        """
        check_num_frames(num_frames)
        pooled = pooled_length(num_frames, config.pool, pool_group(config, float(frame_rate)))
        return config.global_tokens + cls._local_tokens(config, pooled)

    @classmethod
    def _local_tokens(cls, config: AdapterConfig, num_pooled: int) -> int:
        """Tokens from the pooled frames (subclasses with their own count override this)."""
        return num_pooled

    def tokens_from_frames(self, feats: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map pooled, left-aligned frames (B, T', in_dim) to tokens and their mask."""
        raise NotImplementedError

    def forward(self, feats: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool and map frames (B, T, in_dim) with mask (B, T) to (B, N, out_dim), (B, N)."""
        check_inputs(feats, mask, self.in_dim)
        # Zeroing padded frames first keeps garbage there (even NaN from torch.empty) out of
        # masked sums and attention scores, where 0 * NaN would still be NaN.
        feats = feats.masked_fill(~mask[..., None], 0.0)
        if self.input_norm is not None:
            # Padded frames stay zero: they must not depend on the fitted statistics.
            feats = self.input_norm(feats).masked_fill(~mask[..., None], 0.0)
        feats, mask = left_align(feats, mask)
        summary = self.summary(feats, mask) if self.summary is not None else None
        feats, mask = temporal_pool(feats, mask, self.config.pool, self.pool_group)
        tokens, token_mask = self.tokens_from_frames(feats, mask)
        if summary is not None:
            tokens = torch.cat([summary.to(tokens.dtype), tokens], 1)
            token_mask = torch.cat([token_mask.new_ones(summary.shape[:2]), token_mask], 1)
        # Zero the padding tokens so nothing computed from padded frames leaves the adapter.
        tokens = tokens.masked_fill(~token_mask[..., None], 0.0)
        return tokens, token_mask


class QueryAdapter(Adapter):
    """An adapter whose learned queries read the whole (pooled) clip: exactly
    ``num_queries`` tokens per clip whatever its length, all valid. Subclasses implement
    ``read_clip``."""

    @classmethod
    def _local_tokens(cls, config: AdapterConfig, num_pooled: int) -> int:
        """Always ``num_queries``."""
        return config.num_queries

    def read_clip(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, num_queries, out_dim) tokens from pooled, left-aligned frames (B, T', in_dim)
        and their mask."""
        raise NotImplementedError

    def tokens_from_frames(self, feats: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens of ``read_clip``; every query token is valid."""
        out = self.read_clip(feats, mask)
        token_mask = torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
        return out, token_mask


class ClipSummary(nn.Module):
    """Mask-aware mean and std over a clip's frames -> ``num_tokens`` tokens by a GELU MLP."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Linear(2 * in_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, num_tokens * out_dim))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frames with mask (B, T) -> (B, num_tokens, out_dim)."""
        mean = temporal_pool(feats, mask, "global", 1)[0]  # (B, 1, D), padding excluded
        var = temporal_pool((feats - mean).pow(2), mask, "global", 1)[0]
        mean, var = mean[:, 0], var[:, 0]
        # The epsilon keeps the gradient of sqrt finite for constant features (silence).
        stats = torch.cat([mean, (var.clamp_min(0) + 1e-6).sqrt()], -1)
        return self.net(stats).view(feats.shape[0], self.num_tokens, self.out_dim)


def check_num_frames(num_frames: int) -> None:
    """Refuse a clip length that cannot produce tokens."""
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: a clip needs at least one valid frame")


def check_inputs(feats: torch.Tensor, mask: torch.Tensor, in_dim: int) -> None:
    """Refuse a batch whose shapes, dtypes or masks do not match the adapter contract."""
    if feats.dim() != 3 or feats.shape[-1] != in_dim:
        raise ValueError(
            f"feats must be (B, T, {in_dim}), got shape {tuple(feats.shape)}"
        )
    if not feats.is_floating_point():
        raise ValueError(f"feats must be floating point, got {feats.dtype}")
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(feats.shape[:2]):
        raise ValueError(
            f"mask must be bool of shape {tuple(feats.shape[:2])}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    empty = ~mask.any(1)
    if bool(empty.any()):
        raise ValueError(
            f"clips {empty.nonzero().flatten().tolist()} have no valid frames; drop them "
            "before the adapter (every clip needs at least one frame)"
        )
