"""Tiny random-weight encoders for tests: an audio and an image encoder.

They follow the Encoder contract exactly like the real ones (every layer's hidden states,
masks, padding invariance) but are small and deterministic: the weights come from
``options.seed`` (default 0), so two builds with the same config are identical.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.encoders.frames import hop_samples
from mullm.errors import ConfigError


def _check_options(config: EncoderConfig, known: set[str], family: str) -> dict:
    unknown = sorted(set(config.options) - known)
    if unknown:
        raise ConfigError(
            f"encoder.options: unknown {family} option(s) {unknown}; known: {sorted(known)}"
        )
    return dict(config.options)


def _sinusoids(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sinusoidal position table (length, dim) on ``device``; no weights, no length
    limit. Built where it is used, so a GPU forward makes no host-to-device copy."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    half = max(1, dim // 2)
    freq = torch.exp(-math.log(10000.0)
                     * torch.arange(half, dtype=torch.float32, device=device) / half)
    table = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)
    return table[:, :dim] if table.shape[1] >= dim else F.pad(table, (0, dim - table.shape[1]))


def _blocks(num: int, dim: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                   batch_first=True, norm_first=True)
        for _ in range(num)
    )


def _heads_for(dim: int, requested: int | None) -> int:
    heads = requested or (4 if dim % 4 == 0 else 1)
    if dim % heads:
        raise ConfigError(f"encoder.options.num_heads={heads} must divide hidden_size={dim}")
    return heads


def _set_sizes(enc: Encoder, config: EncoderConfig, opts: dict) -> int:
    """Set width, layer count and seed of a tiny encoder from its config; return its heads."""
    enc.hidden_size = int(config.hidden_size or 32)
    enc.num_layers = int(config.num_layers or 3)
    if enc.num_layers < 1:
        raise ConfigError(f"encoder.num_layers={enc.num_layers} must be >= 1")
    enc.seed = int(opts.get("seed", 0))
    return _heads_for(enc.hidden_size, opts.get("num_heads"))


class TinyAudioEncoder(Encoder):
    """Conv front end + small transformer at 50 Hz from 16 kHz; random, seeded weights.

    Returns ``num_layers`` hidden states (default 3): the front-end output, then one per
    transformer block (like Hugging Face models, whose first hidden state is the embedding).
    """

    modality = "audio"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        opts = _check_options(config, {"seed", "num_heads"}, "tiny_audio")
        self.sample_rate = int(config.sample_rate or 16000)
        self.frame_rate = float(config.frame_rate or 50.0)
        self.hop = hop_samples(self.sample_rate, self.frame_rate)
        heads = _set_sizes(self, config, opts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            # Non-overlapping frames: frame t sees exactly samples [t*hop, (t+1)*hop).
            self.frontend = nn.Conv1d(1, self.hidden_size, kernel_size=self.hop,
                                      stride=self.hop)
            self.norm = nn.LayerNorm(self.hidden_size)
            self.blocks = _blocks(self.num_layers - 1, self.hidden_size, heads)
        self.requires_grad_(False)
        self.eval()

    def frame_spec(self) -> dict:
        """ceil(num_samples / hop) frames, at least 1."""
        return {"rule": "hop", "hop": int(self.hop)}

    def fingerprint(self) -> dict:
        """Base fingerprint plus the seed that fixes the random weights."""
        return {**super().fingerprint(), "seed": self.seed}

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) -> (B, num_layers, T, hidden_size), mask (B, T)."""
        device = self.frontend.weight.device
        dtype = self.frontend.weight.dtype
        x = inputs.to(device=device, dtype=dtype)
        lengths = lengths.to(device)
        n = x.shape[1]
        frames = torch.clamp((lengths + self.hop - 1) // self.hop, min=1)
        total = int(frames.max())
        x = x * (torch.arange(n, device=device)[None, :] < lengths[:, None])
        x = F.pad(x, (0, max(0, total * self.hop - n)))[:, :total * self.hop]
        mask = frame_mask(frames, total)
        h = self.frontend(x[:, None]).transpose(1, 2)  # (B, T, D)
        h = self.norm(h) + _sinusoids(total, self.hidden_size, device).to(h.dtype)
        h = h * mask[..., None]
        states = [h]
        for block in self.blocks:
            h = block(h, src_key_padding_mask=~mask)
            h = h * mask[..., None]  # padded positions are defined as zero
            states.append(h)
        return EncoderOutput(hidden_states=torch.stack(states, 1).to(inputs.device),
                             mask=mask.to(inputs.device))


class TinyImageEncoder(Encoder):
    """Patchify conv + transformer blocks over one image (B, 3, H, W) -> (B, L, P, D).

    Images are resized to ``options.image_size`` (default 32) so the patch count P
    (= frame_rate, frames per image) is fixed. A video (B, F, 3, H, W) with ``lengths`` =
    frames per video gives F * P frames, masked past each video's length.
    """

    modality = "image"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        opts = _check_options(config, {"seed", "num_heads", "image_size", "patch_size"},
                              "tiny_image")
        self.image_size = int(opts.get("image_size", 32))
        self.patch_size = int(opts.get("patch_size", 8))
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"encoder.options.image_size={self.image_size} must be a multiple of "
                f"patch_size={self.patch_size}"
            )
        self.num_patches = (self.image_size // self.patch_size) ** 2
        self.sample_rate = 1
        self.frame_rate = float(self.num_patches)
        heads = _set_sizes(self, config, opts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.patch = nn.Conv2d(3, self.hidden_size, self.patch_size, self.patch_size)
            self.pos = nn.Parameter(0.02 * torch.randn(self.num_patches, self.hidden_size))
            self.blocks = _blocks(self.num_layers - 1, self.hidden_size, heads)
        self.requires_grad_(False)
        self.eval()

    def fingerprint(self) -> dict:
        """Base fingerprint plus seed and geometry."""
        return {**super().fingerprint(), "seed": self.seed, "image_size": self.image_size,
                "patch_size": self.patch_size}

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, L, P, D)."""
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 channels (RGB), got {images.shape[1]}")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size),
                                   mode="bilinear", align_corners=False)
        h = self.patch(images).flatten(2).transpose(1, 2) + self.pos
        states = [h]
        for block in self.blocks:
            h = block(h)
            states.append(h)
        return torch.stack(states, 1)

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Images (B, 3, H, W) or videos (B, F, 3, H, W) -> (B, L, F*P, D), mask."""
        device = self.patch.weight.device
        x = inputs.to(device=device, dtype=self.patch.weight.dtype)
        lengths = lengths.to(device)
        p = self.num_patches
        if x.dim() == 4:
            bad = [i for i, n in enumerate(lengths.tolist()) if n != 1]
            if bad:
                raise ValueError(f"sample(s) {bad}: a still image must have length 1, got "
                                 f"{[lengths[i].item() for i in bad]}")
            h = self._encode_images(x)
            mask = torch.ones(x.shape[0], p, dtype=torch.bool, device=inputs.device)
            return EncoderOutput(hidden_states=h.to(inputs.device), mask=mask)
        bsz, nf = x.shape[:2]
        bad = [i for i, n in enumerate(lengths.tolist()) if n > nf]
        if bad:
            raise ValueError(f"sample(s) {bad}: length exceeds the {nf} padded video frames")
        h = self._encode_images(x.flatten(0, 1))  # (B*F, L, P, D)
        h = h.view(bsz, nf, self.num_layers, p, self.hidden_size).transpose(1, 2)
        h = h.reshape(bsz, self.num_layers, nf * p, self.hidden_size)
        mask = frame_mask(lengths * p, nf * p)
        return EncoderOutput(hidden_states=(h * mask[:, None, :, None]).to(inputs.device),
                             mask=mask.to(inputs.device))
