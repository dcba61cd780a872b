"""Music decoders behind one interface (``MusicDecoder``): MusicGen (transformers) and
AudioLDM2 (diffusers, optional). Each library is imported only when its decoder is built."""

from __future__ import annotations

from mullm.outputs.decoders.base import OFFLINE_DECODERS, MusicDecoder
from mullm.outputs.decoders.builder import build_decoder, decoder_condition_shape

__all__ = ["OFFLINE_DECODERS", "MusicDecoder", "build_decoder", "decoder_condition_shape"]
