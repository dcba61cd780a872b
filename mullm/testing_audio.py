"""Audio files in the formats users bring, made on the spot for tests and benchmarks.

PyAV (FFmpeg) encodes them, so no binary fixture is stored and CI needs no system FFmpeg:
AAC in MP4 (``.m4a``) and raw ADTS (``.aac``), Opus, WMA, MP3 with or without a Xing
header, FLAC ... ``write_encoded`` takes a float waveform and the FFmpeg muxer and encoder
names; ``vbr_mp3_without_xing`` and ``silence_then_noise`` build the two MP3s that
libsndfile measured wrongly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_encoded(path: str | os.PathLike, wave: np.ndarray, sample_rate: int, *,
                  container: str, codec: str, bit_rate: int | None = None,
                  vbr_quality: float | None = None,
                  container_options: dict[str, str] | None = None) -> Path:
    """Encode a mono float waveform (samples,) in [-1, 1] into ``path``.

    Args:
        container: FFmpeg muxer name ("mp4", "adts", "ogg", "asf", "mp3", "flac").
        codec: FFmpeg encoder name ("aac", "libopus", "wmav2", "libmp3lame", "flac").
        bit_rate: target bits per second (CBR-ish encoders such as wmav2 need one).
        vbr_quality: the encoder's VBR quality scale (LAME's -q:a, 0 best .. 9).
        container_options: muxer options, e.g. ``{"write_xing": "0"}`` for MP3.

    Raises:
        av.error.FFmpegError: the encoder refuses the settings.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    with av.open(os.fspath(path), "w", format=container,
                 options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout="mono")
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        if vbr_quality is not None:
            stream.codec_context.qscale = vbr_quality
        for i in range(0, len(x), 4096):
            frame = av.AudioFrame.from_ndarray(x[None, i:i + 4096], format="flt",
                                               layout="mono")
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):  # PyAV converts to the encoder's format
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def sine(duration_s: float, sample_rate: int = 44100, freq: float = 440.0,
         amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine tone."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def vbr_mp3_without_xing(path: str | os.PathLike, duration_s: float = 40.0) -> Path:
    """A VBR MP3 with no Xing/Info frame (``ffmpeg -c:a libmp3lame -q:a 4 -write_xing 0``),
    whose length only decoding to the end reveals."""
    return write_encoded(path, sine(duration_s), 44100, container="mp3", codec="libmp3lame",
                         vbr_quality=4, container_options={"write_xing": "0"})


def silence_then_noise(path: str | os.PathLike, silence_s: float = 5.0, noise_s: float = 20.0,
                       xing: bool = True, seed: int = 0) -> Path:
    """A VBR MP3: ``silence_s`` of digital silence, then white noise. Its first frames are
    tiny, so a length estimated from the first frames' bit rate is far too long."""
    sr = 44100
    noise = 0.3 * np.random.default_rng(seed).standard_normal(round(noise_s * sr))
    wave = np.concatenate([np.zeros(round(silence_s * sr)), noise]).astype(np.float32)
    return write_encoded(path, wave, sr, container="mp3", codec="libmp3lame", vbr_quality=4,
                         container_options=None if xing else {"write_xing": "0"})


def mixed_folder(root: str | os.PathLike) -> dict[str, str | None]:
    """A folder of 20 entries as real collections hold them, plus one hidden file.

    Returns each entry's id (its path relative to ``root``, as ``str``; the non-UTF-8 name
    holds a surrogate escape) -> None when it must caption, else a phrase its error record
    must contain. ``.DS_Store`` is hidden and must be skipped.
    """
    from mullm.audio import synth_clip, write_wav

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}

    def ok(name: str) -> None:
        expect[name] = None

    write_wav(root / "good.wav", synth_clip(duration_s=2.0), 16000)
    ok("good.wav")
    for name, (container, codec, sr, extra) in {
            "memo.m4a": ("mp4", "aac", 44100, {}), "raw.aac": ("adts", "aac", 44100, {}),
            "voice.opus": ("ogg", "libopus", 48000, {}),
            "old.wma": ("asf", "wmav2", 44100, {"bit_rate": 128000}),
            "sub/nested.flac": ("flac", "flac", 22050, {})}.items():
        write_encoded(root / name, sine(3.0, sr), sr, container=container, codec=codec,
                      **extra)
        ok(name)
    vbr_mp3_without_xing(root / "vbr40.mp3", 40.0)
    ok("vbr40.mp3")
    silence_then_noise(root / "quiet-start.mp3", 5.0, 20.0, xing=False)
    ok("quiet-start.mp3")
    write_wav(root / "take1", synth_clip(duration_s=1.0), 16000)  # a WAV without extension
    ok("take1")
    latin1 = os.fsdecode(b"caf\xe9.wav")  # as a Latin-1 system names it
    write_wav(root / latin1, synth_clip(duration_s=1.0, seed=3), 16000)
    ok(latin1)
    (root / "link-to-good.wav").symlink_to("good.wav")
    ok("link-to-good.wav")
    (root / "zero.wav").write_bytes(b"")
    expect["zero.wav"] = "file is empty"
    (root / "notes.txt").write_text("liner notes, not a list of files\n" * 20)
    expect["notes.txt"] = "cannot decode audio"
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    expect["cover.jpg"] = "cannot decode audio"
    cut = write_encoded(root / "cut.m4a", sine(3.0), 44100, container="mp4", codec="aac")
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    expect["cut.m4a"] = "cannot decode audio"
    cut = vbr_mp3_without_xing(root / "cut.mp3", 10.0)
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2 + 17])
    expect["cut.mp3"] = "truncated"
    (root / "broken-link.wav").symlink_to("gone.wav")
    expect["broken-link.wav"] = "broken symbolic link"
    (root / "loop-a.wav").symlink_to("loop-b.wav")
    (root / "loop-b.wav").symlink_to("loop-a.wav")
    expect["loop-a.wav"] = expect["loop-b.wav"] = "symbolic link loop"
    os.mkfifo(root / "fifo")  # never opened: it would block a reader forever
    expect["fifo"] = "not a regular file"
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return expect
