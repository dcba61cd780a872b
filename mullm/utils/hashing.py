"""Content hashes: files, decoded waveforms, module weights and JSON-able data.

Each returns a sha256 hex digest (64 characters). They key feature caches and
fingerprint encoders, so their byte layout is part of stored data: changing one
invalidates every cache made with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in ``chunk``-byte blocks.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when missing).
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def wave_sha256(wave: np.ndarray | torch.Tensor, sample_rate: int) -> str:
    """sha256 of a decoded mono waveform (samples as float32) at ``sample_rate`` Hz.

    The rate and length are hashed with the samples, so the same samples at another rate
    hash differently. A tensor is copied to the CPU first.
    """
    if hasattr(wave, "detach"):  # a torch tensor (torch is not imported for numpy input)
        import torch

        wave = wave.detach().to("cpu", torch.float32).numpy()
    arr = np.ascontiguousarray(wave, dtype=np.float32)
    h = hashlib.sha256(f"{sample_rate}:{arr.shape[0]}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def module_weights_hash(module: torch.nn.Module) -> str:
    """sha256 over every tensor of a module's state dict: names, dtypes, shapes and bytes."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys; values JSON cannot hold are written with ``str``."""
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def json_sha256(obj: Any) -> str:
    """sha256 of ``canonical_json(obj)``: equal for equal data whatever the key order."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
