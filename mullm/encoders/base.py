"""The encoder contract shared by every modality.

An encoder is frozen. It takes a padded batch of inputs plus their lengths and returns the
hidden states of every layer it exposes, stacked as (B, L, T, D), and a frame mask (B, T)
that is True on real frames. Layer selection (an index, a list, all; reduced by mean or by a
learned weighted sum) is not the encoder's job: ``LayerSelector`` does it on the trainable
side, so the learned weights of MU-LLaMA are saved with the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mullm.config import EncoderConfig
from mullm.encoders.frames import FrameSpec, count_frames
from mullm.errors import ConfigError


@dataclass
class EncoderOutput:
    """Per-layer hidden states (B, L, T, D) and a frame mask (B, T), True on real frames."""

    hidden_states: torch.Tensor
    mask: torch.Tensor


class Encoder(nn.Module):
    """Base class: subclasses set the rate attributes and implement ``encode``.

    Attributes:
        modality: "audio", "image" or "video".
        sample_rate: input samples per second (audio) or frames per second (video);
            for still images, the number of images (1).
        frame_rate: output frames per second of input (for images: frames per image).
        num_layers: how many hidden-state layers ``encode`` returns.
        hidden_size: width D of each layer.
    """

    modality: str = "audio"
    sample_rate: int = 16000
    frame_rate: float = 50.0
    num_layers: int = 1
    hidden_size: int = 1

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config

    def train(self, mode: bool = True) -> Encoder:
        """Stay in eval mode whatever is asked: an encoder is frozen, and train mode would
        change its output (dropout, HuBERT's layer drop, HTSAT's spectrogram augmentation)
        when a model that holds it is put in train mode."""
        return super().train(False)

    def frame_spec(self) -> FrameSpec:
        """This encoder's frame arithmetic as data (``mullm.encoders.frames``); the processor
        stores it to size placeholders without the encoder. Default: the ``rate`` rule."""
        return {"rule": "rate", "frame_rate": float(self.frame_rate),
                "sample_rate": float(self.sample_rate)}

    def num_frames(self, num_samples: int) -> int:
        """Output frames for an input of ``num_samples`` samples (exact, used to size
        placeholders before encoding): ``count_frames(self.frame_spec(), num_samples)``."""
        return count_frames(self.frame_spec(), num_samples)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Encode a padded batch; subclasses implement this."""
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Validate the batch, encode it, and check the output against the contract.

        Args:
            inputs: (B, samples) audio, (B, C, H, W) images or (B, F, C, H, W) video.
            lengths: (B,) valid samples / images / frames per row (any device).

        Returns:
            ``EncoderOutput`` with hidden states (B, L, T, D) and mask (B, T), both on
            ``inputs.device``.

        Raises:
            ValueError: a malformed batch (see ``check_batch``).
            RuntimeError: ``encode`` broke the contract: its output is on another device
                than ``inputs``, or its mask disagrees with ``num_frames``.
        """
        check_batch(inputs, lengths, self.modality)
        out = self.encode(inputs, lengths)
        check_output_device(type(self).__name__, out, inputs.device)
        expected = torch.tensor([self.num_frames(int(n)) for n in lengths], device="cpu")
        got = out.mask.sum(1).cpu()
        if not torch.equal(expected, got):
            raise RuntimeError(
                f"{type(self).__name__}: num_frames() promised {expected.tolist()} frames "
                f"but encode() marked {got.tolist()} as valid"
            )
        return out

    def fingerprint(self) -> dict:
        """What identifies this encoder's output (used by the feature cache)."""
        return {"name": self.config.name, "checkpoint": self.config.checkpoint,
                "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
                "num_layers": self.num_layers, "hidden_size": self.hidden_size}


def check_batch(inputs: torch.Tensor, lengths: torch.Tensor, modality: str) -> None:
    """Refuse a batch whose rank, lengths or values are wrong, naming the sample."""
    if modality == "audio":
        if inputs.dim() != 2:
            raise ValueError(
                f"audio batch must be (batch, samples), got shape {tuple(inputs.shape)}"
            )
    elif inputs.dim() not in (4, 5):
        raise ValueError(
            f"{modality} batch must be (batch, C, H, W) or (batch, frames, C, H, W), "
            f"got shape {tuple(inputs.shape)}"
        )
    if lengths.dim() != 1 or lengths.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"lengths must be (batch,) = ({inputs.shape[0]},), got {tuple(lengths.shape)}"
        )
    for i, n in enumerate(lengths.tolist()):
        if n <= 0:
            raise ValueError(f"sample {i}: empty {modality} input (length {n})")
        if modality == "audio" and n > inputs.shape[1]:
            raise ValueError(f"sample {i}: length {n} exceeds padded size {inputs.shape[1]}")
    finite = torch.isfinite(inputs.reshape(inputs.shape[0], -1)).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"sample(s) {bad}: {modality} input contains NaN or inf values")


def check_output_device(name: str, out: EncoderOutput, device: torch.device) -> None:
    """Refuse an encoder output whose hidden states or mask are not on ``device`` (the
    input's): the adapter's first op would otherwise fail, or silently copy, on a GPU."""
    for field in ("hidden_states", "mask"):
        got = getattr(out, field).device
        if got != device:
            raise RuntimeError(
                f"{name}.encode returned {field} on {got} for inputs on {device}; an encoder "
                f"must return hidden states and mask on its input's device (create tensors "
                f"with device=inputs.device, or move them with .to(inputs.device))"
            )


def frame_mask(frames: torch.Tensor, total: int) -> torch.Tensor:
    """A (B, total) bool mask, True on the first ``frames[b]`` positions."""
    return torch.arange(total, device=frames.device)[None, :] < frames[:, None]


class LayerSelector(nn.Module):
    """Select and reduce encoder layers: an index, a list, or all; mean or learned weights."""

    def __init__(self, layers: int | list[int] | str, reduce: str, num_layers: int) -> None:
        super().__init__()
        if layers == "all":
            idx = list(range(num_layers))
        elif isinstance(layers, int):
            idx = [layers]
        else:
            idx = list(layers)
        resolved = []
        for i in idx:
            j = i + num_layers if i < 0 else i
            if not 0 <= j < num_layers:
                raise ConfigError(
                    f"encoder.layers: layer {i} does not exist; the encoder has "
                    f"{num_layers} layers (0..{num_layers - 1}, or negative from the end)"
                )
            resolved.append(j)
        self.register_buffer("index", torch.tensor(resolved, dtype=torch.long),
                             persistent=False)
        self.reduce = reduce
        if reduce == "weighted" and len(resolved) > 1:
            self.weights = nn.Parameter(torch.zeros(len(resolved)))
        else:
            self.weights = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, L, T, D) -> (B, T, D)."""
        chosen = hidden_states.index_select(1, self.index.to(hidden_states.device))
        if chosen.shape[1] == 1:
            return chosen[:, 0]
        if self.weights is not None:
            w = torch.softmax(self.weights, 0).to(chosen.dtype)
            return torch.einsum("bltd,l->btd", chosen, w)
        return chosen.mean(1)
