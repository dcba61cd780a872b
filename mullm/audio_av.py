"""Decoding with PyAV (FFmpeg) for what libsndfile cannot read, or reads with only an
estimated length: MP3, AAC (``.m4a``, ``.mp4``, raw ``.aac``), WMA, Opus, AC-3, ALAC and
every other audio stream FFmpeg decodes. PyAV's wheels bundle FFmpeg, so nothing is
installed or downloaded at run time.

A file is decoded to its true end, and its length is what was decoded: an MP3's header
length is an estimate from the bit rate unless it has a Xing/Info/VBRI frame (a 40 s VBR
MP3 without one is "6.68 s" to libsndfile). A file is refused (``AudioError``) when it is
truncated or damaged: a frame FFmpeg cannot decode, a length shorter than an exact declared
one (MP4 sample tables, an MP3's Xing frame count), an MP3 whose last frame is cut off, or
an OGG/WAV with a cut structure (``mullm.audio_checks``).

Samples come out as float32 (frames, channels) at the stream's first sample rate and
channel layout; FFmpeg's resampler keeps them there if a stream changes rate or layout
mid-way (rare: concatenated files).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mullm.audio_checks import check_structure, mp3_declares_length, mpeg_frame_size
from mullm.errors import AudioError

# Demuxers that read other files or URLs named inside the file (playlists, concat lists):
# a music folder's playlist is not audio, and opening what it names is not our business.
_REFUSED_FORMATS = frozenset({"hls", "concat", "dash", "sdp", "rtsp", "rtp", "ffmetadata"})
# Containers whose declared duration is exact (sample tables), so a shorter decode is a cut.
_EXACT_LENGTH_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
# Decoded length may fall short of an exact declared one by encoder delay and padding.
_LENGTH_SLACK_S = 0.05


@dataclass
class AvStreamInfo:
    """What decoding a file to its end found: the first sample rate and channel count, the
    decoded frames (per channel) and ``container/codec`` names."""

    sample_rate: int
    channels: int
    frames: int
    format: str


def _av() -> Any:
    try:
        import av
    except ImportError:  # a dependency in setup.py; only a broken install gets here
        raise AudioError("decoding this file needs PyAV: pip install av") from None
    global _QUIET
    if not _QUIET:
        # FFmpeg's own log lines ("Header missing", "Xing stream size off") would repeat, on
        # stderr, what the AudioError of the file already says.
        av.logging.set_level(av.logging.PANIC)
        _QUIET = True
    return av


_QUIET = False


def _short(exc: BaseException) -> str:
    # FFmpegError's strerror is FFmpeg's own phrase; its str() adds the errno, the path
    # and PyAV's "last error log", which may come from an earlier file.
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _open(path: Path) -> Any:
    """Open ``path`` with FFmpeg. (A playlist inside a local file may name only local
    files: FFmpeg limits nested opens to the file protocol; we refuse playlists anyway.)"""
    av = _av()
    try:
        # Names that are not UTF-8 reach FFmpeg as their original bytes (PyAV encodes
        # with the file-system encoding and surrogateescape).
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, ValueError, UnicodeError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({_short(exc)}); not an audio format "
                         "that libsndfile or FFmpeg reads, or a damaged file") from None
    names = set(container.format.name.split(","))
    if names & _REFUSED_FORMATS:
        container.close()
        raise AudioError(f"{path}: cannot decode audio: FFmpeg reads it as a "
                         f"{container.format.name} list of other files, not audio")
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise AudioError(f"{path}: cannot decode audio: no audio stream (FFmpeg reads it as "
                         f"{container.format.name} with streams: {', '.join(kinds)})")
    return container


def decode_blocks(path: str | os.PathLike, found: dict[str, str] | None = None
                  ) -> Iterator[tuple[np.ndarray, int]]:
    """Decode the first audio stream to its end: (float32 (frames, channels), sample rate)
    blocks, in order, at the stream's first rate and layout. ``found["format"]`` is set to
    ``container/codec`` (e.g. ``mp3/mp3float``) once the file is open.

    Raises:
        AudioError: not decodable, no audio stream, damaged frames, or truncated (see the
            module docstring); raised when the problem is reached, at the latest after the
            last block.
    """
    av = _av()
    path = Path(path)
    check_structure(path)
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        if found is not None:
            found["format"] = f"{_format_name(container)}/{stream.codec_context.name}"
        resampler = None
        rate = 0
        decoded = 0
        bad: list[tuple[int, str]] = []  # (packet number, what went wrong where)
        last_packet: tuple[bytes, int] | None = None
        packets = 0
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                last_packet = (bytes(packet)[:4], packet.size)
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as exc:
                where = f"at {decoded / rate if rate else 0.0:.2f} s: {_short(exc)}"
                bad.append((packets, where))
                continue
            for frame in frames:
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout,
                                                  rate=rate)
                for out in resampler.resample(frame):
                    if out.samples:
                        decoded += out.samples
                        yield np.ascontiguousarray(out.to_ndarray().T, np.float32), rate
        if resampler is not None:
            for out in resampler.resample(None):  # flush what the resampler holds
                if out.samples:
                    decoded += out.samples
                    yield np.ascontiguousarray(out.to_ndarray().T, np.float32), rate
        if bad:
            what = "the last frame" if bad[-1][0] == packets and len(bad) == 1 else \
                f"{len(bad)} frame(s)"
            raise AudioError(f"{path}: truncated or damaged {_format_name(container)} audio: "
                             f"{what} could not be decoded (first {bad[0][1]})")
        _check_end(path, container, stream, decoded, rate, last_packet)
    finally:
        container.close()


def _format_name(container: Any) -> str:
    return container.format.name.split(",")[0]


def _check_end(path: Path, container: Any, stream: Any, decoded: int, rate: int,
               last_packet: tuple[bytes, int] | None) -> None:
    """Refuse a file whose decode stopped short of its declared end."""
    fmt = _format_name(container)
    if decoded == 0 or rate <= 0:
        raise AudioError(f"{path}: cannot decode audio: the {fmt} audio stream holds no "
                         "samples")
    names = set(container.format.name.split(","))
    exact = bool(names & _EXACT_LENGTH_FORMATS) or (fmt == "mp3" and mp3_declares_length(path))
    declared = _declared_seconds(container, stream)
    got = decoded / rate
    if exact and declared is not None and got < 0.99 * declared - _LENGTH_SLACK_S:
        raise AudioError(f"{path}: truncated {fmt} audio: the header says {declared:.2f} s, "
                         f"the file holds only {got:.2f} s")
    if fmt == "mp3" and last_packet is not None:
        header, size = last_packet
        expected = mpeg_frame_size(header)
        if expected is not None and size < expected:
            raise AudioError(f"{path}: truncated MP3: the last frame (at {got:.2f} s) is cut "
                             f"off ({size} of {expected} bytes)")


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE: microseconds
    return None


def probe(path: str | os.PathLike) -> AvStreamInfo:
    """Decode ``path`` to its end and report what was decoded (nothing is kept).

    Raises:
        AudioError: as ``decode_blocks``.
    """
    rate, channels, frames = 0, 0, 0
    found: dict[str, str] = {}
    for block, sr in decode_blocks(path, found):
        if not channels:
            rate, channels = sr, block.shape[1]
        frames += block.shape[0]
    return AvStreamInfo(rate, channels, frames, found["format"])


def decode_all(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The whole stream as float32 (frames, channels) and its sample rate.

    Raises:
        AudioError: as ``decode_blocks``.
    """
    blocks, rate = [], 0
    for block, sr in decode_blocks(path):
        blocks.append(block)
        rate = sr
    if not blocks:  # decode_blocks refuses an empty stream; this guards the concatenate
        raise AudioError(f"{path}: cannot decode audio: no samples")
    channels = max(b.shape[1] for b in blocks)
    if any(b.shape[1] != channels for b in blocks):  # never: the resampler fixes the layout
        raise AudioError(f"{path}: the channel count changes mid-stream")
    return np.concatenate(blocks, axis=0), rate

