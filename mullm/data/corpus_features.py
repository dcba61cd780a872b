"""A corpus's encoder features, extracted once into the feature cache and read back by clip.

``ensure_features`` encodes every clip of a ``metadata.jsonl`` into a cache folder named by
the corpus and the encoder's fingerprint (``$MULLM_CACHE/features/<corpus>/<hash>``), so a
changed encoder never reads stale features and a second run only checks what is there.
Training then reads those features (``data.feature_cache``) and never runs the encoder;
``clip_frames`` hands the probes and the diagnostic benchmarks each clip's valid frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mullm.config import EncoderConfig


def features_dir(metadata: str | Path, encoder: torch.nn.Module) -> Path:
    """The cache folder of ``metadata``'s corpus under ``encoder``."""
    from mullm.features.keys import fingerprint_hash
    from mullm.llm import cache_root

    corpus = Path(metadata).resolve().parent.name
    return cache_root() / "features" / corpus / fingerprint_hash(encoder.fingerprint())[:16]


def _audio_paths(metadata: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(x) for x in metadata.read_text().splitlines() if x.strip()]
    paths = [str(Path(r["audio"]) if Path(r["audio"]).is_absolute()
                 else metadata.parent / r["audio"]) for r in rows]
    return [r["id"] for r in rows], paths


def ensure_features(metadata: str | Path, encoder_config: EncoderConfig,
                    progress: bool = True, batch_size: int = 16) -> Path:
    """Extract every clip of ``metadata`` that the cache lacks; returns the cache folder.

    Raises:
        RuntimeError: clips that could not be encoded (listed in the folder's errors.jsonl).
    """
    from mullm.encoders import build_encoder
    from mullm.features.extract import extract_features

    metadata = Path(metadata)
    encoder = build_encoder(encoder_config)
    out = features_dir(metadata, encoder)
    ids, paths = _audio_paths(metadata)
    summary = extract_features(encoder, paths, out, ids=ids, batch_size=batch_size,
                               progress=progress)
    if summary.failed:
        raise RuntimeError(f"{out}: {summary.failed} clip(s) could not be encoded, e.g. "
                           f"{summary.errors[:2]}")
    return out


def clip_frames(metadata: str | Path, cache_dir: str | Path, layer: int = -1
                ) -> dict[str, torch.Tensor]:
    """{clip id: (T, D) frames of one stored layer} for every clip of ``metadata``."""
    from mullm.features.cache import FeatureCache

    metadata = Path(metadata)
    cache = FeatureCache(cache_dir)
    ids, paths = _audio_paths(metadata)
    return {i: cache.get(p)[0][layer].float() for i, p in zip(ids, paths)}
