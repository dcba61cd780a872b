"""Per-dimension standardisation of encoder frames, with statistics fitted on training data.

Encoder features come in very different scales per dimension: in the spectral features the
key-profile correlations that carry the mode have a standard deviation of ~0.11 beside
log-mel dimensions of ~0.63; MERT and basic-pitch have their own outlier and near-zero
dimensions. A probe standardises its inputs and reads every dimension alike; an adapter
fed raw frames learns the small dimensions several times more slowly (Adam moves each
weight by about the learning rate, so a dimension's effect on the output grows with its
scale), and the output norm, dominated by the large dimensions, shrinks them further.

``InputStandardizer`` maps each dimension to zero mean and unit variance over the training
frames. Its statistics are buffers (saved with the adapter, restored on load and resume),
fitted once before training (``mullm.train.input_norm``); an unfitted one is the identity,
so an untrained model behaves as before.
"""

from __future__ import annotations

import torch
from torch import nn

# A dimension that is (nearly) constant on the training frames is divided by this fraction
# of the median standard deviation instead of its own, so that unseen values there cannot
# blow up.
STD_FLOOR = 0.01


class InputStandardizer(nn.Module):
    """(x - mean) / std per feature dimension; identity until ``fit`` is called."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        # Frames the statistics came from (0: not fitted); saved, so a resume never refits.
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @property
    def fitted(self) -> bool:
        """True once statistics have been fitted (or loaded)."""
        return bool(self.count > 0)

    @torch.no_grad()
    def fit(self, total: torch.Tensor, total_sq: torch.Tensor, count: float) -> None:
        """Set the statistics from per-dimension sums of frames and of squared frames over
        ``count`` valid frames (float64 sums keep the variance exact for long corpora).

        Raises:
            ValueError: no frames, or sums of the wrong size.
        """
        if count <= 0:
            raise ValueError("InputStandardizer.fit: no valid frames to fit on")
        if total.shape != self.mean.shape or total_sq.shape != self.mean.shape:
            raise ValueError(f"InputStandardizer.fit: sums of shape {tuple(total.shape)} for "
                             f"{self.mean.shape[0]} dimensions")
        mean = total.double() / count
        var = (total_sq.double() / count - mean.pow(2)).clamp_min(0.0)
        std = var.sqrt()
        floor = max(float(std.median()) * STD_FLOOR, 1e-6)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.clamp_min(floor).to(self.std.dtype))
        self.count.fill_(float(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise (..., dim) frames."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
