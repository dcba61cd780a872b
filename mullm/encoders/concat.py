"""Several frozen encoders side by side: their frames joined on the first one's time grid.

``options.encoders`` is a mapping name -> encoder config (each may name a preset), in order;
all must take the same sample rate. The first encoder sets the frame grid (its frame spec,
frame rate and mask); every other encoder's frames are averaged over each grid frame's span
of time, so a frame of the result describes the same stretch of audio in every part. Each
encoder contributes its last hidden layer. Example (configs/encoders/spectral-basic-pitch.yaml)::

    name: concat
    sample_rate: 22050
    options:
      encoders:
        spectral: {preset: encoders/spectral, sample_rate: 22050}
        basic_pitch: {preset: encoders/basic-pitch}
"""

from __future__ import annotations

import torch
from torch import nn

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput
from mullm.errors import ConfigError


def align_frames(feats: torch.Tensor, frames: torch.Tensor, rate: float, grid_frames: torch.Tensor,
                 grid_rate: float, total: int) -> torch.Tensor:
    """Average (B, T, D) frames at ``rate`` over the spans of a grid at ``grid_rate``.

    Grid frame t covers [t / grid_rate, (t + 1) / grid_rate) seconds and gets the mean of the
    source frames that start inside it, or the last source frame before it when none does
    (a coarser source, or the clip's end). Returns (B, total, D), zero past ``grid_frames``.
    """
    batch, _, dim = feats.shape
    device = feats.device
    csum = torch.cat([feats.new_zeros(batch, 1, dim), feats.float().cumsum(1)], 1)
    t = torch.arange(total, device=device, dtype=torch.float64)
    lo = torch.ceil(t * rate / grid_rate - 1e-9).long()
    hi = torch.ceil((t + 1) * rate / grid_rate - 1e-9).long()
    n = frames.to(device)[:, None]
    lo = torch.minimum(lo[None].expand(batch, -1), n - 1)
    hi = torch.minimum(torch.maximum(hi[None].expand(batch, -1), lo + 1), n)
    gather = lambda idx: torch.gather(csum, 1, idx[..., None].expand(-1, -1, dim))  # noqa: E731
    out = (gather(hi) - gather(lo)) / (hi - lo)[..., None].to(csum.dtype)
    valid = torch.arange(total, device=device)[None] < grid_frames.to(device)[:, None]
    return (out * valid[..., None]).to(feats.dtype)


class ConcatEncoder(Encoder):
    """The encoders of ``options.encoders`` run on the same audio, frames concatenated."""

    modality = "audio"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        from mullm.config import compose, from_dict, validate_encoder
        from mullm.encoders import build_encoder

        unknown = sorted(set(config.options) - {"encoders"})
        children = config.options.get("encoders")
        if unknown or not isinstance(children, dict) or not children:
            raise ConfigError("encoder.options of a concat encoder must be {encoders: {name: "
                              "encoder config, ...}} (non-empty); got keys "
                              f"{sorted(config.options)}")
        self.parts = nn.ModuleDict()
        for name, raw in children.items():
            if not isinstance(raw, dict):
                raise ConfigError(f"encoder.options.encoders.{name}: expected a mapping, got "
                                  f"{raw!r}")
            cfg = from_dict(EncoderConfig, compose(raw), prefix=f"encoder.options.encoders.{name}")
            validate_encoder(cfg)
            if cfg.name == "concat":
                raise ConfigError(f"encoder.options.encoders.{name}: concat encoders do not nest")
            self.parts[name] = build_encoder(cfg)
        rates = {n: e.sample_rate for n, e in self.parts.items()}
        if len(set(rates.values())) != 1:
            raise ConfigError(f"encoder.options.encoders: every part must take the same sample "
                              f"rate (set sample_rate on each), got {rates}")
        first = next(iter(self.parts.values()))
        self.sample_rate = first.sample_rate
        if config.sample_rate not in (None, self.sample_rate):
            raise ConfigError(f"encoder.sample_rate={config.sample_rate} differs from its parts' "
                              f"{self.sample_rate}")
        self.frame_rate = first.frame_rate
        self.num_layers = 1
        self.hidden_size = sum(e.hidden_size for e in self.parts.values())
        self.requires_grad_(False)
        self.eval()

    def frame_spec(self) -> dict:
        """The first part's frame arithmetic (its frames are the grid)."""
        return next(iter(self.parts.values())).frame_spec()

    def fingerprint(self) -> dict:
        """Every part's fingerprint, in order."""
        fp = super().fingerprint()
        fp["parts"] = {n: e.fingerprint() for n, e in self.parts.items()}
        return fp

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) -> (B, 1, T, sum of the parts' widths) on the first part's grid."""
        outs = [(e, e(inputs, lengths)) for e in self.parts.values()]
        grid = outs[0][1]
        grid_frames = grid.mask.sum(1)
        total = grid.mask.shape[1]
        feats = [grid.hidden_states[:, -1]]
        for enc, out in outs[1:]:
            feats.append(align_frames(out.hidden_states[:, -1], out.mask.sum(1),
                                      enc.frame_rate, grid_frames, self.frame_rate, total))
        return EncoderOutput(hidden_states=torch.cat(feats, -1)[:, None].contiguous(),
                             mask=grid.mask)
