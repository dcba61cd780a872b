"""SALMONN window-level Q-Former: a few queries per fixed window, so tokens grow with time.

Windows of ``window_frames`` frames start every ``window_stride`` frames (default: no
overlap). A clip of ``n`` valid frames gets ``ceil(max(n - window_frames, 0) / stride) + 1``
windows: the first starts at frame 0 and the last is the first that reaches frame n - 1, so
every valid frame is covered and no window is all padding. Windows are unfolded into the
batch dimension and read by one shared Q-Former in a single call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mullm.adapters.base import Adapter
from mullm.adapters.qformer import QFormerStack
from mullm.config import AdapterConfig
from mullm.errors import ConfigError


def num_windows(num_frames: int, window: int, stride: int) -> int:
    """Windows needed to cover ``num_frames`` frames (0 for an empty clip)."""
    if num_frames <= 0:
        return 0
    return -(-max(num_frames - window, 0) // stride) + 1


def _window_and_stride(config: AdapterConfig) -> tuple[int, int]:
    """(window, stride) in pooled frames; the stride defaults to the window."""
    window = config.window_frames
    return window, (config.window_stride if config.window_stride is not None else window)


class WindowQFormerAdapter(Adapter):
    """``queries_per_window`` tokens per window, cross-attending only within the window."""

    def __init__(self, config: AdapterConfig, in_dim: int, out_dim: int,
                 frame_rate: float) -> None:
        super().__init__(config, in_dim, out_dim, frame_rate)
        self.window, self.stride = _window_and_stride(config)
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ConfigError(
                f"adapter.window_frames={config.window_frames} and window_stride="
                f"{config.window_stride}: need window_frames >= 1 and 1 <= stride <= "
                "window_frames (a larger stride would skip frames between windows)"
            )
        hidden = config.hidden_size
        self.in_proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden),
                                     nn.Dropout(config.dropout))
        # Within-window positions: without them a window's tokens could not tell the order
        # of its frames.
        self.position = nn.Parameter(torch.randn(self.window, hidden) * 0.02)
        self.qformer = QFormerStack(config.queries_per_window, hidden, config.num_layers,
                                    config.num_heads, 1, config.dropout)
        self.out_proj = nn.Linear(hidden, out_dim)

    @classmethod
    def _local_tokens(cls, config: AdapterConfig, num_pooled: int) -> int:
        """Windows over the pooled clip times ``queries_per_window``."""
        window, stride = _window_and_stride(config)
        return num_windows(num_pooled, window, stride) * config.queries_per_window

    def tokens_from_frames(self, feats: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unfold windows into the batch, read each with the Q-Former, fold back."""
        batch, length, _ = feats.shape
        total = num_windows(length, self.window, self.stride)
        padded = (total - 1) * self.stride + self.window
        x = self.in_proj(feats)
        x = F.pad(x, (0, 0, 0, padded - length))
        m = F.pad(mask, (0, padded - length), value=False)
        # (B, W, hidden, window) -> (B * W, window, hidden)
        x = x.unfold(1, self.window, self.stride).permute(0, 1, 3, 2)
        x = x.reshape(batch * total, self.window, -1) + self.position
        m = m.unfold(1, self.window, self.stride).reshape(batch * total, self.window)
        valid = torch.arange(total, device=mask.device)[None, :] < windows_per_clip(
            mask.sum(1), self.window, self.stride)[:, None]
        # All-padding windows are discarded below, but softmax over no keys is NaN and NaN
        # survives masking in the backward pass: let them attend to their padding instead.
        m = m | ~valid.reshape(-1, 1)
        out = self.out_proj(self.qformer(x, m))
        q = self.config.queries_per_window
        tokens = out.reshape(batch, total * q, -1)
        token_mask = valid.repeat_interleave(q, dim=1)
        return tokens, token_mask


def windows_per_clip(lengths: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Tensor version of ``num_windows`` for a (B,) tensor of valid frame counts."""
    extra = (lengths - window).clamp(min=0)
    count = torch.div(extra + stride - 1, stride, rounding_mode="floor") + 1
    return torch.where(lengths > 0, count, torch.zeros_like(count))
