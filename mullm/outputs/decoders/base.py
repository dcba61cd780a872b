"""The one small interface every music decoder implements, and the string-keyed builder.

A decoder turns a conditioning tensor (B, T, D) into waveforms: ``generate_from_condition``
(the projector path), ``generate_from_text`` (the decoder prompted with text through its own
text encoder: the baseline), and ``text_condition`` (that own text encoder's embedding of a
caption, shaped like the projector's output: the target the projector is trained to hit).
``condition_shape`` (T, D) is read from the checkpoint's config files alone, so a model can be
built and trained against a decoder without loading its weights until they are needed.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.errors import ConfigError, ModelLoadError
from mullm.outputs.config import MusicDecoderConfig

OFFLINE_DECODERS = ("offline:tiny-random-musicgen",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_checkpoint(cfg: MusicDecoderConfig) -> str:
    """The folder or hub id to load: ``offline:tiny-random-musicgen`` is built once (random
    weights, seed 0) into ``$MULLM_CACHE/decoders``; anything else is returned as given.

    Raises:
        ConfigError: an unknown ``offline:`` name.
    """
    name = cfg.checkpoint
    if not name.startswith("offline:"):
        local = Path(name).expanduser()
        return str(local) if local.exists() else name
    if name not in OFFLINE_DECODERS:
        raise ConfigError(f"music_output.decoder.checkpoint={name!r} is unknown; offline "
                          f"decoders: {list(OFFLINE_DECODERS)}")
    from mullm.llm import cache_root
    from mullm.outputs.decoders.standin import make_tiny_musicgen

    return str(make_tiny_musicgen(cache_root() / "decoders" / name.split(":", 1)[1]))


def checkpoint_source(cfg: MusicDecoderConfig) -> tuple[str, dict[str, Any]]:
    """What a decoder loads its files from: ``resolve_checkpoint(cfg)`` and the keyword
    arguments every ``from_pretrained`` call of it takes (the pinned ``revision``, if any)."""
    kw: dict[str, Any] = {"revision": cfg.revision} if cfg.revision else {}
    return resolve_checkpoint(cfg), kw


def load_error(what: str, source: str, exc: Exception) -> ModelLoadError:
    """The error for a decoder (or its config) that cannot be loaded: offline, nothing is
    downloaded, so say where the weights must come from."""
    return ModelLoadError(
        f"cannot load the {what} {source!r}: {exc}. Real music decoders need their weights: "
        "download the checkpoint where you have internet (huggingface-cli download "
        f"{source}) and set music_output.decoder.checkpoint to the folder, or use "
        "offline:tiny-random-musicgen (random weights: noise) to test the plumbing")


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[torch.Generator | None]:
    """Run the block with the global RNG seeded to ``seed`` (restored afterwards) and yield a
    generator seeded the same way; ``None`` leaves the RNG alone and yields None."""
    if seed is None:
        yield None
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator(device=device).manual_seed(seed)


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad a mono waveform to exactly ``samples``."""
    if len(wave) >= samples:
        return wave[:samples]
    return np.pad(wave, (0, samples - len(wave)))


class MusicDecoder(ABC):
    """A frozen music decoder behind the small interface the output bridge uses.

    Attributes:
        name: "musicgen" or "audioldm2".
        sample_rate: of the waveforms it returns (Hz).
        condition_shape: (T, D) of the conditioning tensors it takes.
    """

    name: str
    sample_rate: int
    condition_shape: tuple[int, int]

    def __init__(self, config: MusicDecoderConfig) -> None:
        self.config = config
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> MusicDecoder:
        """Move the decoder's weights to ``device``."""
        self.device = torch.device(device)
        self._move(self.device)
        return self

    @abstractmethod
    def _move(self, device: torch.device) -> None: ...

    def _seeded(self, seed: int | None
                ) -> contextlib.AbstractContextManager[torch.Generator | None]:
        """``seeded`` on the decoder's device with ``seed``, or the config's when None."""
        return seeded(seed if seed is not None else self.config.seed, self.device)

    def _clips(self, waves: Iterable[np.ndarray], duration_s: float) -> list[np.ndarray]:
        """The returned form of generated mono waveforms: float32 in [-1, 1], cut or
        zero-padded to exactly ``duration_s`` at ``sample_rate``."""
        samples = int(round(duration_s * self.sample_rate))
        return [fit_length(np.clip(np.asarray(w, dtype=np.float32), -1.0, 1.0), samples)
                for w in waves]

    @staticmethod
    @abstractmethod
    def condition_shape_of(config: MusicDecoderConfig) -> tuple[int, int]:
        """(T, D) of the decoder ``config`` names, from its checkpoint's config files only."""

    @abstractmethod
    def text_condition(self, texts: list[str]) -> torch.Tensor:
        """The decoder's own text-encoder embedding of ``texts`` as (B, T, D), float32, no
        gradient: what the projector is trained to reproduce."""

    @abstractmethod
    def generate_from_condition(self, condition: torch.Tensor, duration_s: float | None = None,
                                seed: int | None = None) -> list[np.ndarray]:
        """Waveforms (mono float32, ``sample_rate``, exactly ``duration_s`` long) for a
        conditioning tensor (B, T, D), with the config's classifier-free guidance."""

    @abstractmethod
    def generate_from_text(self, texts: list[str], duration_s: float | None = None,
                           seed: int | None = None) -> list[np.ndarray]:
        """Waveforms for text prompts through the decoder's own text encoder (the baseline
        the projector is compared with)."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded with every clip."""
        c = self.config
        return {"decoder": self.name, "checkpoint": c.checkpoint,
                "guidance_scale": c.guidance_scale, "do_sample": c.do_sample,
                "top_k": c.top_k if c.do_sample else None,
                "temperature": c.temperature if c.do_sample else None,
                **({"num_inference_steps": c.num_inference_steps}
                   if self.name == "audioldm2" else {})}

    def _check_condition(self, condition: torch.Tensor) -> None:
        if condition.dim() != 3 or tuple(condition.shape[1:]) != tuple(self.condition_shape):
            raise ValueError(f"{self.name} takes conditioning of shape (B, "
                             f"{self.condition_shape[0]}, {self.condition_shape[1]}), got "
                             f"{tuple(condition.shape)}")


__all__ = ["OFFLINE_DECODERS", "MusicDecoder", "checkpoint_source", "fit_length", "load_error",
           "resolve_checkpoint", "seeded"]
