"""Mask-aware temporal pooling applied before every adapter.

MusiLingo and LLark pool frames into fixed groups (a token rate), MU-LLaMA takes the mean
over the whole clip. A padded frame never contributes to a pooled token: a group is valid
iff it holds at least one valid frame, so a clip of ``n`` valid frames gives
``ceil(n / group)`` tokens whatever the batch it sits in.
"""

from __future__ import annotations

import math

import torch

from mullm.config import AdapterConfig
from mullm.errors import ConfigError


def pool_group(config: AdapterConfig, frame_rate: float) -> int:
    """Frames per pooled token for ``config.pool`` "mean"/"max" (1 for "none"/"global")."""
    if config.pool not in ("mean", "max"):
        return 1
    if config.pool_frames is not None:
        if config.pool_frames < 1:
            raise ConfigError(f"adapter.pool_frames={config.pool_frames!r} must be >= 1")
        return config.pool_frames
    if config.pool_rate_hz is None:
        raise ConfigError(
            f"adapter.pool={config.pool!r} needs pool_frames or pool_rate_hz; neither is set"
        )
    if config.pool_rate_hz <= 0 or frame_rate <= 0:
        raise ConfigError(
            f"adapter.pool_rate_hz={config.pool_rate_hz!r} with frame_rate={frame_rate!r}: "
            "both must be > 0"
        )
    # Round halves up rather than Python's round-half-to-even, so 75 Hz -> 10 Hz gives 8
    # frames and 65 Hz -> 10 Hz gives 7, not a surprise 6.
    return max(1, math.floor(frame_rate / config.pool_rate_hz + 0.5))


def pooled_length(num_frames: int, pool: str, group: int) -> int:
    """Valid tokens after pooling a clip of ``num_frames`` valid frames."""
    if num_frames < 0:
        raise ValueError(f"num_frames={num_frames} must be >= 0")
    if pool == "global":
        return 1 if num_frames > 0 else 0
    if pool in ("mean", "max"):
        return -(-num_frames // group)
    return num_frames


def left_align(feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each clip's valid frames to the front (keeping their order) if they are not."""
    counts = mask.sum(1, keepdim=True)
    aligned = torch.arange(mask.shape[1], device=mask.device)[None, :] < counts
    if torch.equal(aligned, mask):
        return feats, mask
    # A stable sort on "is padding" keeps valid frames in order; left-padded batches
    # (some collators pad on the left) then pool and window like right-padded ones.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    feats = torch.gather(feats, 1, order[..., None].expand_as(feats))
    return feats, aligned


def temporal_pool(
    feats: torch.Tensor, mask: torch.Tensor, pool: str, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool left-aligned (B, T, D) frames by ``pool``; returns (B, N, D) and mask (B, N)."""
    if pool == "none" or (pool in ("mean", "max") and group == 1):
        return feats, mask
    weights = mask.to(feats.dtype)[..., None]
    if pool == "global":
        count = weights.sum(1, keepdim=True).clamp(min=1.0)
        pooled = (feats * weights).sum(1, keepdim=True) / count
        return pooled, mask.any(1, keepdim=True)
    if pool not in ("mean", "max"):
        raise ConfigError(f"adapter.pool={pool!r} is not one of 'none', 'mean', 'max', 'global'")
    batch, length, dim = feats.shape
    num_groups = -(-length // group)
    extra = num_groups * group - length
    if extra:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        weights = mask.to(feats.dtype)[..., None]
    feats = feats.reshape(batch, num_groups, group, dim)
    group_mask = mask.reshape(batch, num_groups, group)
    valid = group_mask.any(2)
    if pool == "mean":
        weights = weights.reshape(batch, num_groups, group, 1)
        count = weights.sum(2).clamp(min=1.0)
        pooled = (feats * weights).sum(2) / count
    else:
        pooled = feats.masked_fill(~group_mask[..., None], float("-inf")).amax(2)
        # An all-padding group would be -inf; zero it so it cannot poison later layers.
        pooled = pooled.masked_fill(~valid[..., None], 0.0)
    return pooled, valid
