"""Fit the adapters' input standardisation on training clips before the first step.

An adapter with ``input_norm: standardize`` (``mullm.adapters.input_norm``) needs the mean and
standard deviation of every feature dimension over the training frames. They are computed
once, from up to ``max_clips`` distinct training clips drawn in a seeded order, through the
model's own input path (cached features when the dataset has them, else the frozen encoder
and the layer selection), so the statistics describe exactly what the adapter is fed. Every
process draws the same clips, so DDP and FSDP ranks agree without communicating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.adapters.input_norm import InputStandardizer


def _norms(model: Any) -> dict[str, InputStandardizer]:
    """Unfitted input standardisers by modality."""
    out = {}
    for modality, adapter in model.adapters.items():
        norm = getattr(adapter, "input_norm", None)
        if isinstance(norm, InputStandardizer) and not norm.fitted:
            out[modality] = norm
    return out


def _clips(dataset: Any, modality: str, max_clips: int, seed: int) -> list[Any]:
    """Up to ``max_clips`` distinct media paths of ``modality`` in a seeded order."""
    seen: dict[str, None] = {}
    for i in np.random.default_rng(seed).permutation(len(dataset)):
        conv = dataset.conversation(int(i))
        paths = conv.audio_paths() if modality == "audio" else conv.image_paths()
        for p in paths:
            seen.setdefault(str(p), None)
            if len(seen) >= max_clips:
                return list(seen)
    return list(seen)


@torch.no_grad()
def fit_input_norms(model: Any, dataset: Any, max_clips: int = 512, seed: int = 0,
                    batch_size: int = 16) -> dict[str, int]:
    """Fit every unfitted input standardiser of ``model`` on ``dataset``'s clips; returns
    {modality: clips used} (empty when there was nothing to fit).

    Raises:
        ValueError: a modality with a standardiser but no clip in the dataset.
    """
    fitted: dict[str, int] = {}
    for modality, norm in _norms(model).items():
        paths = _clips(dataset, modality, max_clips, seed)
        if not paths:
            raise ValueError(f"adapter.input_norm=standardize for {modality!r}, but the "
                             f"training data has no {modality} to fit its statistics on")
        total = torch.zeros(norm.mean.shape, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for a in range(0, len(paths), batch_size):
            chunk = paths[a:a + batch_size]
            items = [dataset.load_audio(Path(p)) if modality == "audio"
                     else model.processor.load_item(modality, p) for p in chunk]
            media = model.processor.batch_media(modality, items, list(range(len(items))),
                                                chunk)
            feats, mask = model.encode_media(modality, media)
            valid = feats[mask].double().cpu()
            total += valid.sum(0)
            total_sq += valid.pow(2).sum(0)
            count += valid.shape[0]
        norm.fit(total, total_sq, count)
        fitted[modality] = len(paths)
    return fitted
