"""``CachedEncoder``: an encoder that serves batches from a feature cache when it can."""

from __future__ import annotations

import os

import torch

from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.features.cache import FeatureCache
from mullm.utils.dtypes import torch_dtype


class CachedEncoder(Encoder):
    """Wrap an encoder so batches are served from a feature cache when the waveform is
    there (matched by its hash), and encoded online otherwise.

    Output is the same EncoderOutput as online encoding (in the cache's dtype). When the
    cache keeps only some layers, ``num_layers`` is that count and online misses are cut
    to the same layers, so both paths agree.

    Raises:
        StaleCacheError: the cache was made with other encoder settings.
    """

    def __init__(self, encoder: Encoder, cache: FeatureCache | str | os.PathLike, *,
                 fallback: bool = True) -> None:
        super().__init__(encoder.config)
        self.encoder = encoder
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.cache.check(encoder)
        self.modality = encoder.modality
        self.sample_rate = encoder.sample_rate
        self.frame_rate = encoder.frame_rate
        self.hidden_size = encoder.hidden_size
        self.kept = self.cache.layers
        self.num_layers = len(self.kept)
        self.fallback = fallback
        self.dtype = torch_dtype(self.cache.index["dtype"])
        self.hits = 0
        self.misses = 0

    def frame_spec(self) -> dict:
        """Same as the wrapped encoder."""
        return self.encoder.frame_spec()

    def fingerprint(self) -> dict:
        """The wrapped encoder's fingerprint."""
        return self.encoder.fingerprint()

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples) + lengths -> hidden states (B, L_kept, T, D) and mask (B, T): each
        row from the cache by waveform hash, the misses encoded online.

        Raises:
            KeyError: a row is not cached and ``fallback`` is False (naming the rows).
        """
        lens = [int(n) for n in lengths.tolist()]
        found: dict[int, torch.Tensor] = {}
        missing = []
        for i, n in enumerate(lens):
            hit = self.cache.lookup(wave=inputs[i, :n], sample_rate=self.sample_rate)
            if hit is not None and hit[0].shape[1] == self.encoder.num_frames(n):
                found[i] = hit[0]
            else:
                missing.append(i)
        self.hits += len(found)
        self.misses += len(missing)
        if missing and not self.fallback:
            raise KeyError(f"{self.cache.dir}: {len(missing)} input(s) not cached "
                           f"(batch rows {missing}) and fallback=False")
        if missing:
            sub_len = max(lens[i] for i in missing)
            idx = torch.tensor(missing, device=inputs.device)
            out = self.encoder(inputs.index_select(0, idx)[:, :sub_len], lengths[missing])
            h = out.hidden_states
            if self.num_layers != self.encoder.num_layers:
                h = h.index_select(1, torch.tensor(self.kept, device=h.device))
            for j, i in enumerate(missing):
                found[i] = h[j, :, :int(out.mask[j].sum())].to(self.dtype)
        device = inputs.device
        frames = torch.tensor([found[i].shape[1] for i in range(len(lens))], device=device)
        total = int(frames.max())
        hs = torch.zeros(len(lens), self.num_layers, total, self.hidden_size,
                         dtype=self.dtype, device=device)
        for i, h in found.items():
            hs[i, :, :h.shape[1]] = h.to(device, self.dtype)
        return EncoderOutput(hidden_states=hs, mask=frame_mask(frames, total))


def cached_or_online(encoder: Encoder, cache_dir: str | os.PathLike | None) -> Encoder:
    """``CachedEncoder`` over ``cache_dir`` when given, else the encoder itself."""
    return encoder if cache_dir is None else CachedEncoder(encoder, cache_dir)
