"""Encoders: a string-keyed builder over lazily imported encoder families."""

from __future__ import annotations

import difflib
import importlib

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput, LayerSelector

# name -> "module:Class". Heavy families are imported only when asked for, so that the
# offline default never imports laion_clap or open_clip.
ENCODERS: dict[str, str] = {
    "spectral": "mullm.encoders.spectral:SpectralEncoder",
    "basic_pitch": "mullm.encoders.basic_pitch:BasicPitchEncoder",
    "concat": "mullm.encoders.concat:ConcatEncoder",
    "tiny_audio": "mullm.encoders.tiny:TinyAudioEncoder",
    "tiny_image": "mullm.encoders.tiny:TinyImageEncoder",
    "mert": "mullm.encoders.mert:MERTEncoder",
    "clap": "mullm.encoders.clap:HFClapEncoder",
    "laion_clap": "mullm.encoders.clap:LaionClapEncoder",
    "jukebox": "mullm.encoders.jukebox:JukeboxEncoder",
    "clip": "mullm.encoders.vision:CLIPVisionEncoder",
    "open_clip": "mullm.encoders.vision:OpenClipEncoder",
    "vit": "mullm.encoders.vision:ViTEncoder",
    "vivit": "mullm.encoders.vision:ViViTEncoder",
}


def build_encoder(config: EncoderConfig) -> Encoder:
    """Build the encoder named by ``config.name``; unknown names list what exists."""
    if config.name not in ENCODERS:
        hint = difflib.get_close_matches(config.name, list(ENCODERS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(
            f"encoder.name={config.name!r} is unknown{extra}; known: {sorted(ENCODERS)}"
        )
    module_name, cls_name = ENCODERS[config.name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "LayerSelector", "build_encoder"]
