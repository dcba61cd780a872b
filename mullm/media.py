"""Media items for the processor: what one modality needs to know, without its encoder.

A ``MediaSpec`` holds, for one modality of a model, everything the processor needs to turn a
file or an array into an encoder input and to count the LLM tokens it will become: the input
sample rate and duration limits, the encoder's frame arithmetic (a frame spec, see
``mullm.encoders.frames``), the adapter's settings (its token count is a pure function of them,
``mullm.adapters.adapter_num_tokens``), the injection kind and, for image encoders, the pixel
preprocessing. It is plain data: saved in ``processor_config.json`` and read back without
building any encoder.

``MediaBatch`` is one modality's items of a batch, padded, each tagged with its sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.adapters import adapter_num_tokens
from mullm.config import AdapterConfig, ModalityConfig, from_dict, to_dict
from mullm.encoders.frames import FrameSpec, count_frames
from mullm.errors import AudioError

MARKERS = {"audio": "<audio>", "image": "<image>", "video": "<video>"}


@dataclass
class MediaBatch:
    """The items of one modality in a batch, each tagged with the sample it belongs to.

    Either raw inputs (``values`` padded: audio (N, samples), images (N, 3, H, W), video
    (N, F, 3, H, W); ``lengths`` (N,) in samples / frames) or precomputed encoder features
    (``features`` (N, L, T, D) with ``frames`` (N,) valid per item). ``sample_index`` (N,)
    says which batch row each item belongs to.
    """

    sample_index: torch.Tensor
    values: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    features: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.sample_index.numel())

    def to(self, device: torch.device | str) -> MediaBatch:
        """A copy with every tensor on ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return MediaBatch(mv(self.sample_index), mv(self.values), mv(self.lengths),
                          mv(self.features), mv(self.frames), self.names)


@dataclass
class Features:
    """Precomputed encoder output for one item: hidden states (L, T, D), all frames valid."""

    hidden_states: torch.Tensor
    name: str = "<features>"


def pad_stack(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad tensors along their first axis: (N, T_max, ...) and lengths (N,)."""
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
    out = items[0].new_zeros((len(items), int(lengths.max()), *items[0].shape[1:]))
    for i, t in enumerate(items):
        out[i, : t.shape[0]] = t
    return out, lengths


@dataclass
class MediaSpec:
    """One modality as the processor sees it (plain data; see the module docstring).

    Attributes:
        modality: the encoder's input kind, "audio", "image" or "video".
        injection: "splice" (placeholder tokens in the text), "xattn" or "prefix".
        frame_spec: the encoder's frame arithmetic (``mullm.encoders.frames``).
        frame_rate: encoder frames per second of input (per image for images).
        adapter: the adapter's settings (``AdapterConfig`` as a mapping).
        sample_rate: audio samples per second (images: 1; video: frames per clip).
        max_duration_s, min_duration_s: audio limits in seconds.
        max_items: most items of this modality in one sample.
        image_spec: pixel preprocessing (``mullm.image.ImageSpec`` fields) for encoders that
            read image or video files; None for encoders that take tensors only.
        video_frames: frames a video is sampled to, for video encoders.
    """

    modality: str
    injection: str
    frame_spec: FrameSpec
    frame_rate: float
    adapter: dict[str, Any]
    sample_rate: int
    max_duration_s: float = 30.0
    min_duration_s: float = 0.1
    max_items: int = 8
    image_spec: dict[str, Any] | None = None
    video_frames: int | None = None

    @classmethod
    def from_encoder(cls, config: ModalityConfig, encoder: Any) -> MediaSpec:
        """The spec of a modality whose encoder is built (its resolved rates and sizes)."""
        image_spec = getattr(encoder, "image_spec", None)
        video_frames = None
        if encoder.modality == "video":
            video_frames = int(encoder.sample_rate)
        return cls(
            modality=encoder.modality, injection=config.injection.kind,
            frame_spec=dict(encoder.frame_spec()), frame_rate=float(encoder.frame_rate),
            adapter=to_dict(config.adapter), sample_rate=int(encoder.sample_rate),
            max_duration_s=float(config.encoder.max_duration_s),
            min_duration_s=float(config.encoder.min_duration_s), max_items=config.max_items,
            image_spec=None if image_spec is None else _jsonable(dataclasses.asdict(image_spec)),
            video_frames=video_frames)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaSpec:
        """Read a spec saved by ``to_dict``; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"media spec: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return _jsonable(dataclasses.asdict(self))

    @property
    def adapter_config(self) -> AdapterConfig:
        """The adapter settings as a typed config."""
        return from_dict(AdapterConfig, self.adapter, prefix="adapter")

    @property
    def splices(self) -> bool:
        """True when this modality's tokens go into the text as placeholders."""
        return self.injection == "splice"

    # ------------------------------------------------------------------ items
    def load_item(self, item: Any, name: str = "item") -> torch.Tensor | Features:
        """A path, array, tensor, ``Features`` or clip -> a checked encoder input.

        Audio files are decoded, resampled to ``sample_rate`` and checked against the
        duration limits (``mullm.audio.load_audio``); so is a clip that carries its own rate
        (anything with ``waveform`` and ``sample_rate``, e.g. ``GeneratedAudio``); arrays and
        tensors are taken as already at ``sample_rate``. Image and video files are opened and
        preprocessed by ``image_spec``.

        Raises:
            mullm.errors.AudioError: an unreadable or invalid file.
            ValueError: a file given to an encoder that only takes tensors.
        """
        if isinstance(item, Features):
            return item
        if self.modality == "audio" and hasattr(item, "waveform") and hasattr(item,
                                                                             "sample_rate"):
            # A clip with its own rate (``mullm.outputs.GeneratedAudio``: a generated clip
            # attached to the next turn, for editing): resampled and checked like a file.
            from mullm.audio import resample, validate_waveform

            where = f"{name} ({getattr(item, 'mode', 'clip')} clip)"
            wave = validate_waveform(np.asarray(item.waveform, dtype=np.float32), where,
                                     sample_rate=int(item.sample_rate))
            if len(wave) > (self.max_duration_s + 1e-6) * int(item.sample_rate):
                raise AudioError(f"{where}: audio is too long: {len(wave) / item.sample_rate:.2f}"
                                 f" s > max_duration_s={self.max_duration_s} s")
            wave = validate_waveform(resample(wave, int(item.sample_rate), self.sample_rate),
                                     where, sample_rate=self.sample_rate,
                                     min_duration_s=self.min_duration_s)
            return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        if isinstance(item, (str, Path)):
            if self.modality == "audio":
                from mullm.audio import load_audio

                wave = load_audio(item, self.sample_rate, max_duration_s=self.max_duration_s,
                                  min_duration_s=self.min_duration_s)
                return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            if self.image_spec is None:
                raise ValueError(f"{item}: this {self.modality} encoder takes tensors, not "
                                 "files")
            from mullm.image import ImageSpec, load_image, load_video_frames

            spec = ImageSpec(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in self.image_spec.items()})
            if self.modality == "video":
                return load_video_frames(item, spec, self.video_frames)
            return load_image(item, spec)
        tensor = item if torch.is_tensor(item) else torch.as_tensor(np.asarray(item))
        return tensor.float()

    def num_frames(self, item: torch.Tensor | Features) -> int:
        """Encoder frames for a loaded item."""
        if isinstance(item, Features):
            return int(item.hidden_states.shape[1])
        if self.modality == "audio":
            return count_frames(self.frame_spec, int(item.shape[0]))
        if item.dim() == 4:  # a video: (frames, C, H, W)
            return count_frames(self.frame_spec, int(item.shape[0]))
        return count_frames(self.frame_spec, 1)

    def num_tokens(self, item: torch.Tensor | Features) -> int:
        """LLM tokens the adapter will emit for a loaded item."""
        return adapter_num_tokens(self.adapter_config, self.frame_rate, self.num_frames(item))

    def batch(self, name: str, items: list[torch.Tensor | Features], sample_index: list[int],
              names: list[str]) -> MediaBatch:
        """Stack this modality's loaded items into a ``MediaBatch``.

        Raises:
            ValueError: mixed features and raw inputs, an empty or non-finite input, or an
                audio item that is not a 1-D waveform; the sample and item are named.
        """
        idx = torch.tensor(sample_index, dtype=torch.long)
        if all(isinstance(x, Features) for x in items):
            feats = [x.hidden_states.transpose(0, 1) for x in items]  # (T, L, D)
            stacked, frames = pad_stack(feats)
            return MediaBatch(idx, features=stacked.transpose(1, 2), frames=frames, names=names)
        if any(isinstance(x, Features) for x in items):
            raise ValueError(f"{name}: a batch mixes precomputed features and raw inputs")
        for i, x in enumerate(items):
            if x.numel() == 0:
                raise ValueError(f"sample {sample_index[i]}: empty {name} input ({names[i]})")
            if not torch.isfinite(x).all():
                raise ValueError(
                    f"sample {sample_index[i]}: {name} input {names[i]} contains NaN or inf")
            if self.modality == "audio" and x.dim() != 1:
                raise ValueError(
                    f"sample {sample_index[i]}: audio {names[i]} must be a 1-D waveform at "
                    f"{self.sample_rate} Hz, got shape {tuple(x.shape)}")
        if self.modality != "audio" and items[0].dim() == 3:
            values = torch.stack(items)
            lengths = torch.ones(len(items), dtype=torch.long)
        else:
            values, lengths = pad_stack(items)
        return MediaBatch(idx, values=values, lengths=lengths, names=names)


def _jsonable(obj: Any) -> Any:
    """Tuples -> lists, recursively (JSON round trips give lists)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


__all__ = ["MARKERS", "Features", "MediaBatch", "MediaSpec", "pad_stack"]
