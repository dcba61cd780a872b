"""Uploads in the demo: check a file against the limits, decode it, describe what the model hears.

Every file a user gives (an upload, a microphone recording, a generated clip attached to the
next turn) goes through ``accept_file``: it is sized, classified by its name, decoded in full
by ``mullm.audio`` / ``mullm.image`` (so corrupt, truncated or undecodable files are found
here, before any model call), copied into the session's folder (for the export) and given a
spectrogram. A file that cannot be used raises ``UploadRejected`` with a message meant for
the chat, naming the file as the user named it (never the server's temporary path).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mullm.audio import AUDIO_EXTENSIONS
from mullm.demo.settings import DemoConfig
from mullm.errors import AudioError, MullmError
from mullm.image import IMAGE_SUFFIXES

# Audio containers people upload that soundfile may not decode; they are tried, and a
# failure gets a message that says which formats work.
OTHER_AUDIO_SUFFIXES = (".m4a", ".aac", ".wma", ".webm", ".mp4", ".amr", ".3gp")
DECODABLE = "WAV, FLAC, OGG (Vorbis/Opus), MP3 or AIFF"


class UploadRejected(MullmError, ValueError):
    """A file the demo cannot use; ``str(exc)`` is the friendly message for the chat."""


@dataclass
class Clip:
    """One audio clip of a conversation: what was given and what the model hears.

    Attributes:
        index: 1-based position among the conversation's clips (the n-th ``<audio>``).
        name: the file name as the user gave it.
        path: the session's copy of the file (exported with the conversation).
        source: "upload", "microphone" or "generated".
        duration_s: length in seconds (decoded, not just the header's claim).
        native_sample_rate, channels: as stored in the file.
        sample_rate: the model's input rate; ``wave`` is at this rate, mono.
        window_s: the longest clip the model hears at once (its encoder's limit).
        wave: the whole clip at ``sample_rate`` (float32, mono).
        spectrogram: PNG of ``wave`` (window edges marked when the clip is long).
        description, segments: for a long clip heard in windows, the whole-track
            description and the per-window captions (``mullm.caption`` record fields).
    """

    index: int
    name: str
    path: Path
    source: str
    duration_s: float
    native_sample_rate: int
    channels: int
    sample_rate: int
    window_s: float
    wave: np.ndarray = field(repr=False)
    spectrogram: Path | None = None
    description: str | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def long(self) -> bool:
        """True when the clip is longer than the model's window."""
        return self.duration_s > self.window_s + 1e-6

    def model_input(self, long_audio: str) -> np.ndarray | None:
        """The waveform spliced into the prompt: the whole clip, its first window
        (``long_audio="first"``), or None when a long clip is heard as text (``"chunk"``)."""
        if not self.long:
            return self.wave
        if long_audio == "first":
            return self.wave[: int(round(self.window_s * self.sample_rate))]
        return None

    def heard(self, long_audio: str) -> str:
        """One line (Markdown) saying what the model hears of this clip."""
        channels = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        head = (f"**Clip {self.index}: {self.name}** ({self.source}): "
                f"{fmt_time(self.duration_s)} ({self.duration_s:.2f} s), "
                f"{self.native_sample_rate} Hz {channels}; the model hears "
                f"{self.sample_rate} Hz mono")
        if not self.long:
            return f"{head}, the whole clip."
        if long_audio == "first":
            return (f"{head}. Longer than the model's {self.window_s:g} s window: only "
                    f"0:00-{fmt_time(self.window_s)} is used (the rest is dimmed).")
        n = len(self.segments)
        parts = ", ".join(f"{fmt_time(s['start_s'])}-{fmt_time(s['end_s'])}"
                          for s in self.segments) or "pending"
        return (f"{head}. Longer than the model's {self.window_s:g} s window: chunked, "
                f"heard in {n or 'its'} windows ({parts}), each captioned, then summarised "
                "for the whole track.")

    def prompt_text(self) -> str:
        """The text that stands for a long clip heard in windows (``long_audio="chunk"``)."""
        lines = [f"[Audio {self.index} \"{self.name}\", {fmt_time(self.duration_s)} long, "
                 f"was heard in {len(self.segments)} parts of up to {self.window_s:g} s.",
                 f"Whole track: {self.description}"]
        lines += [f"{fmt_time(s['start_s'])}-{fmt_time(s['end_s'])}: {s['caption']}"
                  for s in self.segments]
        return "\n".join(lines) + "]"


# Images go to an encoder that only takes tensors (no pixel preprocessing of its own) as RGB
# in [0, 1], at most this many pixels on the long side (it resizes them anyway).
TENSOR_IMAGE_SIDE = 512


@dataclass
class ImageItem:
    """One image of a conversation (``index``: the n-th ``<image>``).

    ``pixels`` is the (3, H, W) float tensor in [0, 1] for encoders that take tensors; None
    when the encoder reads the file itself (then ``path`` is what the model gets).
    """

    index: int
    name: str
    path: Path
    width: int
    height: int
    pixels: Any = field(default=None, repr=False)

    def model_input(self) -> Any:
        """What goes to the model for this image: its tensor, or its file path."""
        return self.pixels if self.pixels is not None else str(self.path)

    def heard(self) -> str:
        """One line (Markdown) describing the image as given."""
        return f"**Image {self.index}: {self.name}**: {self.width}x{self.height} pixels."


def fmt_time(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration in seconds."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def kind_of(name: str) -> str:
    """"audio", "image" or "other", from the file name's suffix."""
    suffix = Path(name).suffix.lower()
    if suffix in AUDIO_EXTENSIONS or suffix in OTHER_AUDIO_SUFFIXES:
        return "audio"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "other"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "file"


def _reason(exc: Exception, path: Path) -> str:
    """The library's message without the server's path (the user knows the file's name)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in (f"{path}: ", f"{path}:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = re.sub(r"Error opening '[^']*': ", "", text.replace(str(path), "the file"))
    return text.rstrip(".")


def check_size(path: Path, name: str, config: DemoConfig) -> None:
    """Refuse a missing or empty file, or one over ``max_upload_mb``."""
    if not path.is_file():
        raise UploadRejected(f"Could not use {name}: the upload did not arrive (no file).")
    size = path.stat().st_size
    if size == 0:
        raise UploadRejected(f"Could not use {name}: the file is empty (0 bytes).")
    if size > config.max_upload_bytes:
        raise UploadRejected(f"Could not use {name}: it is {size / 1e6:.1f} MB; the limit is "
                             f"{config.max_upload_mb:g} MB.")


def accept_audio(path: str | Path, name: str, index: int, source: str, spec: Any,
                 config: DemoConfig, dest: Path) -> Clip:
    """Check and decode one audio file for the model described by ``spec`` (a
    ``mullm.media.MediaSpec``); copy it to ``dest`` and draw its spectrogram.

    Raises:
        UploadRejected: empty, too big, undecodable, truncated, too short or too long
            (past ``config.max_audio_s``); the message names ``name``.
    """
    from mullm.audio import audio_info, load_audio
    from mullm.demo.spectrogram import spectrogram_png

    path = Path(path)
    check_size(path, name, config)
    try:
        info = audio_info(path)
        if info.duration_s > config.max_audio_s + 1e-6:
            raise UploadRejected(
                f"Could not use {name}: it is {fmt_time(info.duration_s)} long; this demo "
                f"accepts clips up to {fmt_time(config.max_audio_s)} "
                f"({config.max_audio_s:g} s).")
        wave = load_audio(path, int(spec.sample_rate), min_duration_s=spec.min_duration_s)
    except UploadRejected:
        raise
    except AudioError as exc:
        hint = ""
        if "decode" in str(exc) and "expected" not in str(exc):
            hint = f" The demo reads {DECODABLE} files."
        raise UploadRejected(f"Could not use {name}: {_reason(exc, path)}.{hint}") from None
    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / f"{index:02d}-{_safe_name(name)}"
    shutil.copyfile(path, copy)
    clip = Clip(index=index, name=name, path=copy, source=source,
                duration_s=len(wave) / spec.sample_rate, native_sample_rate=info.sample_rate,
                channels=info.channels, sample_rate=int(spec.sample_rate),
                window_s=float(spec.max_duration_s), wave=wave)
    clip.spectrogram = draw_spectrogram(clip, config.long_audio, dest, spectrogram_png)
    return clip


def draw_spectrogram(clip: Clip, long_audio: str, dest: Path, draw: Any = None) -> Path:
    """(Re)draw ``clip``'s spectrogram with its window edges and used part; return the PNG."""
    if draw is None:
        from mullm.demo.spectrogram import spectrogram_png as draw
    bounds: list[float] = []
    used = None
    if clip.long:
        if clip.segments:
            bounds = [s["start_s"] for s in clip.segments[1:]]
        else:
            bounds = list(np.arange(clip.window_s, clip.duration_s, clip.window_s))
        if long_audio == "first":
            used = (0.0, clip.window_s)
    return draw(clip.wave, clip.sample_rate, dest / f"{clip.index:02d}-spectrogram.png",
                boundaries_s=bounds, used_s=used)


def accept_image(path: str | Path, name: str, index: int, config: DemoConfig,
                 dest: Path, as_tensor: bool = False) -> ImageItem:
    """Check and decode one image; copy it to ``dest``; with ``as_tensor``, also keep its
    pixels as a (3, H, W) tensor in [0, 1] (long side at most ``TENSOR_IMAGE_SIDE``).

    Raises:
        UploadRejected: empty, too big, not an image, truncated or too small.
    """
    from mullm.image import open_image

    path = Path(path)
    check_size(path, name, config)
    try:
        img = open_image(path)
    except AudioError as exc:  # ImageError subclasses AudioError
        raise UploadRejected(f"Could not use {name}: {_reason(exc, path)}.") from None
    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / f"{index:02d}-{_safe_name(name)}"
    shutil.copyfile(path, copy)
    item = ImageItem(index=index, name=name, path=copy, width=img.size[0], height=img.size[1])
    if as_tensor:
        import torch

        small = img.copy()
        small.thumbnail((TENSOR_IMAGE_SIDE, TENSOR_IMAGE_SIDE))
        item.pixels = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0
                                       ).permute(2, 0, 1).contiguous()
    return item


__all__ = ["Clip", "ImageItem", "UploadRejected", "accept_audio", "accept_image",
           "check_size", "draw_spectrogram", "fmt_time", "kind_of"]
