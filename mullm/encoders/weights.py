"""Loading official checkpoint files safely, shared by the encoder families.

``load_weights_file`` reads ``.pt`` / ``.pth.tar`` / ``.bin`` / ``.safetensors`` with
``torch.load(weights_only=True)`` (never arbitrary pickles unless asked), ``load_exact`` loads a
state dict with strict key and shape checks, and the ``check_*`` helpers refuse settings that
do not match the built encoder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder
from mullm.errors import ConfigError, ModelLoadError

# Classes that official checkpoints pickle and that are only dict subclasses (Jukebox's
# hyper-parameters): their pickled path is mapped to ``dict`` itself, so weights_only=True
# rebuilds them as plain dicts (its unpickler only fills exact dicts) and runs no code.
_CONTAINER_ALIASES = ("jukebox.hparams.Hyperparams", "jukebox_infer.hparams.Hyperparams")


def missing_weights_error(what: str, path: str | os.PathLike, hint: str = "") -> ModelLoadError:
    """The one error for an absent weights file: nothing is downloaded at run time."""
    extra = f"; {hint}" if hint else ""
    return ModelLoadError(
        f"weights not found: {what} at {path} (no network? download it where you have "
        f"internet and point the config at it){extra}"
    )


def load_weights_file(path: str | os.PathLike, *, allow_pickle: bool = False,
                      what: str = "checkpoint") -> Any:
    """``torch.load`` a checkpoint on the CPU with ``weights_only=True`` (plus known container
    classes); ``allow_pickle=True`` falls back to full unpickling, for files you trust."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_weights_error(what, path)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: {what} file is empty (0 bytes); download it again")
    safe = [(dict, name) for name in _CONTAINER_ALIASES]
    try:
        with torch.serialization.safe_globals(safe):
            return _torch_load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the reason and the remedy
        if not allow_pickle:
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be inspected
                unsafe = []
            listed = f" (it pickles {unsafe})" if unsafe else ""
            raise ModelLoadError(
                f"{path}: {what} cannot be read with torch.load(weights_only=True){listed}: "
                f"{str(exc).strip().splitlines()[0]}. If you trust this file, set "
                f"encoder.options.allow_pickle=true to unpickle it fully"
            ) from exc
    return _torch_load(path, weights_only=False)


def _torch_load(path: Path, weights_only: bool) -> Any:
    """Memory-map zip-format files (a 10 GB prior is then read lazily); legacy files, which
    cannot be mapped, are read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc) and "zipfile" not in str(exc):
            raise
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def strip_prefix(state: dict[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_exact(module: nn.Module, state: dict[str, Any], what: str, assign: bool = False
               ) -> None:
    """``load_state_dict(strict=True)`` with an error listing what is missing, extra or
    mis-shaped (never ``strict=False``: a silently dropped weight is a wrong model)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ModelLoadError(
            f"{what}: checkpoint does not match the model: {len(missing)} missing keys "
            f"{missing[:6]}, {len(extra)} unexpected keys {extra[:6]}"
        )
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ModelLoadError(
            f"{what}: {len(bad)} tensors have the wrong shape, e.g. {k}: checkpoint "
            f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)} (wrong model size?)"
        )
    module.load_state_dict(state, strict=True, assign=assign)


def check_declared(encoder: Encoder) -> None:
    """Refuse a config whose declared sizes or rates disagree with the built encoder."""
    cfg = encoder.config
    for key, actual in (("sample_rate", encoder.sample_rate), ("hidden_size", encoder.hidden_size),
                        ("num_layers", encoder.num_layers), ("frame_rate", encoder.frame_rate)):
        declared = getattr(cfg, key)
        if declared is not None and not math.isclose(float(declared), float(actual),
                                                     rel_tol=1e-3):
            raise ConfigError(f"encoder.{key}={declared} but {cfg.name} "
                              f"({cfg.checkpoint or 'as configured'}) has {key}={actual}; "
                              f"fix the value or leave it unset")


def check_options(config: EncoderConfig, allowed: set[str]) -> None:
    """Refuse unknown ``encoder.options`` keys, naming the ones this encoder reads."""
    unknown = sorted(set(config.options) - allowed)
    if unknown:
        raise ConfigError(
            f"encoder.options: unknown keys {unknown} for encoder {config.name!r}; "
            f"it reads {sorted(allowed)}"
        )
