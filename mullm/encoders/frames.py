"""Frame counts as data: how many frames an encoder makes from an input of N samples.

The processor must size each clip's placeholder run before anything is encoded, and it is
built without the encoders (from the tokenizer and the saved processor config). So each
encoder describes its frame arithmetic as a small JSON-able *frame spec*, and both the encoder
(``Encoder.num_frames``) and the processor count frames with ``count_frames`` on that spec:
one implementation, so they cannot disagree.

Rules (``spec["rule"]``):

- ``rate``: ceil(n * frame_rate / sample_rate), at least 1 (generic; tiny image/video).
- ``rate_floor``: floor(n * frame_rate / sample_rate), at least 1 (Basic Pitch, which keeps
  only the whole frames of its 86 per second).
- ``hop``: ceil(n / hop), at least 1 (spectral and tiny audio encoders).
- ``conv``: a stack of strided 1-D convolutions (HuBERT / MERT), optionally per window of
  ``window`` samples whose frames are concatenated; inputs shorter than ``min_samples`` are
  padded to it.
- ``windows``: ``per_window`` frames per whole window of ``window`` samples plus the covered
  part of the last (CLAP's HTSAT grid, integer arithmetic).
- ``floor``: whole pooling groups of ``pool`` tokens of ``hop`` samples (Jukebox / LLark:
  floor mode), at least 1.
- ``per_item``: ``tokens`` per whole group of ``per`` input units (one image, or one video
  clip of ``per`` frames), at least one group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from mullm.errors import ConfigError

FrameSpec = dict[str, Any]


def hop_samples(sample_rate: int, frame_rate: float) -> int:
    """Samples per frame of a ``hop``-rule encoder.

    Raises:
        ConfigError: ``frame_rate`` does not divide ``sample_rate`` into a whole number of
            samples per frame (naming both).
    """
    hop = sample_rate / frame_rate
    if abs(hop - round(hop)) > 1e-9 or hop < 1:
        raise ConfigError(
            f"encoder.frame_rate={frame_rate} must divide sample_rate={sample_rate} into a "
            "whole number of samples per frame (e.g. 25, 50)"
        )
    return round(hop)


def conv_output_length(n: int, kernels: list[int], strides: list[int]) -> int:
    """Frames the HuBERT conv feature extractor makes from ``n`` samples (0 if too short)."""
    for k, s in zip(kernels, strides, strict=True):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def receptive_field(kernels: list[int], strides: list[int]) -> int:
    """Fewest samples that give one output frame."""
    n = 1
    for k, s in reversed(list(zip(kernels, strides, strict=True))):
        n = (n - 1) * s + k
    return n


def _rate(spec: FrameSpec, n: int) -> int:
    return max(1, math.ceil(n * float(spec["frame_rate"]) / float(spec["sample_rate"])))


def _rate_floor(spec: FrameSpec, n: int) -> int:
    # rate / sample_rate first: the product in the order Basic Pitch computes it
    return max(1, math.floor(n * (float(spec["frame_rate"]) / float(spec["sample_rate"]))))


def _hop(spec: FrameSpec, n: int) -> int:
    return max(1, -(-n // int(spec["hop"])))


def _conv(spec: FrameSpec, n: int) -> int:
    kernels, strides = list(spec["kernels"]), list(spec["strides"])
    least = int(spec["min_samples"])
    window = spec.get("window")
    if window is None or n <= window:
        chunks = [n]
    else:
        chunks = [min(window, n - s) for s in range(0, n, int(window))]
    return sum(conv_output_length(max(c, least), kernels, strides) for c in chunks)


def _windows(spec: FrameSpec, n: int) -> int:
    window, per_window = int(spec["window"]), int(spec["per_window"])
    full, rem = divmod(n, window)
    return max(1, full * per_window + (-(-rem * per_window // window) if rem else 0))


def _floor(spec: FrameSpec, n: int) -> int:
    return max(1, max(1, n // int(spec["hop"])) // int(spec["pool"]))


def _per_item(spec: FrameSpec, n: int) -> int:
    return int(spec["tokens"]) * max(1, n // int(spec["per"]))


RULES: dict[str, Callable[[FrameSpec, int], int]] = {
    "rate": _rate, "rate_floor": _rate_floor, "hop": _hop, "conv": _conv, "windows": _windows,
    "floor": _floor, "per_item": _per_item,
}


def count_frames(spec: FrameSpec, num_samples: int) -> int:
    """Frames an encoder with frame spec ``spec`` makes from ``num_samples`` input samples
    (audio samples, or images / video frames).

    Raises:
        ValueError: an unknown rule or a negative length.
    """
    rule = spec.get("rule")
    if rule not in RULES:
        raise ValueError(f"frame spec rule {rule!r} is unknown; known: {sorted(RULES)}")
    n = int(num_samples)
    if n < 0:
        raise ValueError(f"num_samples={n} must be >= 0")
    return RULES[rule](spec, n)


__all__ = ["RULES", "FrameSpec", "conv_output_length", "count_frames", "receptive_field"]
