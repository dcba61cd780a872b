"""The string-keyed decoder builder: ``music_output.decoder.name`` -> a ``MusicDecoder``
(each library is imported only when its decoder is built)."""

from __future__ import annotations

from mullm.errors import ConfigError, ModelLoadError
from mullm.outputs.config import MusicDecoderConfig
from mullm.outputs.decoders.base import MusicDecoder


def decoder_class(cfg: MusicDecoderConfig) -> type[MusicDecoder]:
    """The class for ``cfg.name`` (imports its library only then).

    Raises:
        ConfigError: an unknown decoder name.
        ModelLoadError: AudioLDM2 without diffusers installed.
    """
    if cfg.name == "musicgen":
        from mullm.outputs.decoders.musicgen import MusicGenDecoder

        return MusicGenDecoder
    if cfg.name == "audioldm2":
        try:
            from mullm.outputs.decoders.audioldm2 import AudioLDM2Decoder
        except ImportError as exc:
            raise ModelLoadError(f"music_output.decoder.name=audioldm2 needs diffusers "
                                 f"(pip install 'mullm[outputs]'): {exc}") from exc
        return AudioLDM2Decoder
    raise ConfigError(f"unknown music decoder {cfg.name!r}; known decoders: musicgen, audioldm2")


def decoder_condition_shape(cfg: MusicDecoderConfig) -> tuple[int, int]:
    """(T, D) of ``cfg``'s decoder from its config files (no weights are loaded)."""
    return decoder_class(cfg).condition_shape_of(cfg)


def build_decoder(cfg: MusicDecoderConfig) -> MusicDecoder:
    """Load the decoder named by ``cfg.name`` from ``cfg.checkpoint`` (frozen, eval mode).

    Raises:
        ConfigError: an unknown decoder name.
        ModelLoadError: weights that are not there (offline, nothing is downloaded).
    """
    return decoder_class(cfg)(cfg)


__all__ = ["build_decoder", "decoder_class", "decoder_condition_shape"]
