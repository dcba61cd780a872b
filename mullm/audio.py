"""Audio I/O and validation: the one place that turns files into checked waveforms.

Every waveform that leaves this module is float32, mono, at the sample rate the caller asked
for, finite, and at least ``min_duration_s`` long. Decoding uses ``soundfile`` (libsndfile:
WAV, FLAC, OGG/Vorbis/Opus, AIFF ...) and, for everything libsndfile cannot read or whose
length it only estimates (MP3, AAC/M4A, WMA, ...), PyAV (FFmpeg; ``mullm.audio_av``), which
decodes to the true end. Resampling uses ``soxr``; torchaudio is not used.

Nothing is truncated silently: a file longer than ``max_duration_s`` is an error, a damaged
or cut file is an error naming it, and long files are read window by window with
``iter_audio_windows`` (bounded memory, every second covered) when the caller asks for
windows. File names that are not valid UTF-8 (``str`` paths holding surrogate escapes, as
``os.listdir`` returns them) are opened by their original bytes.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from mullm.audio_checks import check_structure, mpeg_frame_size
from mullm.errors import AudioError
from mullm.utils.files import check_input_file
from mullm.utils.music import MODES, pitch_class

# Extensions that name audio. Folder and glob inputs no longer filter by them (every file is
# offered to the decoders); they remain for callers that want a hint, e.g. writing files.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a",
                    ".mp4", ".aac", ".wma", ".ac3", ".mka", ".webm", ".caf", ".alac")

# RMS below this (dBFS) counts as silence: far below any musical content, above dither.
SILENCE_DB = -60.0

SOUNDFILE, PYAV = "soundfile", "pyav"


@dataclass
class AudioInfo:
    """What decoding found: native sample rate, channels, frames and duration.

    For ``backend="soundfile"`` the frames are the header's (exact for the formats read
    that way); for ``backend="pyav"`` they were counted by decoding to the end.
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    backend: str = SOUNDFILE

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _sf() -> ModuleType:
    # Imported lazily so that `import mullm` stays light.
    import soundfile

    return soundfile


# What soundfile raises on bad data (LibsndfileError is a RuntimeError).
_DECODE_ERRORS = (RuntimeError, OSError, ValueError, TypeError, EOFError)
# libsndfile formats whose header length is only an estimate: decoded with PyAV instead.
_ESTIMATED_LENGTH = ("MP3",)


def _check_file(path: str | os.PathLike) -> Path:
    return check_input_file(path, "audio", AudioError)


def _native(path: Path) -> bytes:
    """The path as the OS spells it: soundfile encodes ``str`` names as strict UTF-8,
    which fails for names holding bytes that are not UTF-8; bytes always work."""
    return os.fsencode(path)


# audio_info results by (path, device, inode, size, mtime): a PyAV file is decoded to its end
# to learn its length, and callers ask for the info, then the samples.
_INFO_CACHE: OrderedDict[tuple, AudioInfo] = OrderedDict()
_INFO_CACHE_SIZE = 512
_INFO_LOCK = threading.Lock()


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (_native(path.absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The native sample rate, channels, frames (true length) and format of an audio file.

    libsndfile's header is used for what it reads exactly; any other file (MP3, AAC/M4A,
    WMA, ...) is decoded to its end with PyAV, once per unchanged file (cached).

    Raises:
        AudioError: naming the file: missing, empty, not a regular file, not decodable, no
            audio stream, truncated or damaged.
    """
    path = _check_file(path)
    key = _stat_key(path)
    with _INFO_LOCK:
        hit = _INFO_CACHE.get(key)
        if hit is not None:
            _INFO_CACHE.move_to_end(key)
            return replace(hit, path=str(path))
    info = _soundfile_info(path)
    if info is None:
        from mullm.audio_av import probe

        found = probe(path)
        info = AudioInfo(str(path), found.sample_rate, found.channels, found.frames,
                         found.format, PYAV)
    if info.sample_rate <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: invalid header (sample rate {info.sample_rate}, "
                         f"{info.channels} channels)")
    with _INFO_LOCK:
        _INFO_CACHE[key] = info
        while len(_INFO_CACHE) > _INFO_CACHE_SIZE:
            _INFO_CACHE.popitem(last=False)
    return info


def _soundfile_info(path: Path) -> AudioInfo | None:
    """libsndfile's view of the file, or None when it cannot read it or only estimates its
    length (then PyAV decodes it). A cut WAV or OGG is refused here."""
    if _looks_like_mpeg_audio(path):
        return None  # MP3: libsndfile's length is an estimate (and mpg123 prints warnings)
    try:
        info = _sf().info(_native(path))
    except _DECODE_ERRORS:
        return None
    if str(info.format) in _ESTIMATED_LENGTH:
        return None
    check_structure(path)
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames),
                     str(info.format))


def _looks_like_mpeg_audio(path: Path) -> bool:
    """An ID3v2 tag or an MPEG audio frame header at the start: MP3 (or MP2) data."""
    with path.open("rb") as f:
        head = f.read(4)
    return head[:3] == b"ID3" or mpeg_frame_size(head) is not None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Mix (frames, channels) down to (frames,) by averaging the channels."""
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"expected (frames,) or (frames, channels), got shape {wave.shape}")
    return wave.mean(axis=1, dtype=np.float64).astype(np.float32) if wave.shape[1] > 1 \
        else wave[:, 0]


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float waveform with soxr (high quality); a no-op at equal rates."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    out = soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), orig_sr, target_sr,
                        quality="HQ")
    return np.asarray(out, dtype=np.float32)


def validate_waveform(wave: np.ndarray, where: str, *, sample_rate: int | None = None,
                      min_duration_s: float = 0.0) -> np.ndarray:
    """Check a mono waveform (1-D, non-empty, finite, long enough); return it as float32."""
    arr = np.asarray(wave)
    if arr.ndim != 1:
        raise AudioError(f"{where}: expected a mono waveform (samples,), got shape {arr.shape}")
    if arr.size == 0:
        raise AudioError(f"{where}: audio is empty (0 samples)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioError(f"{where}: expected float samples, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        first = int(np.argmin(finite))
        at = f" (first at {first / sample_rate:.3f} s)" if sample_rate else f" (index {first})"
        raise AudioError(f"{where}: audio contains NaN or inf samples{at}")
    if sample_rate and min_duration_s > 0 and arr.size < min_duration_s * sample_rate:
        raise AudioError(
            f"{where}: audio is too short: {arr.size / sample_rate:.3f} s < minimum "
            f"{min_duration_s} s"
        )
    return arr


def rms_db(wave: np.ndarray) -> float:
    """Root-mean-square level in dBFS (-inf for digital silence)."""
    if wave.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(wave: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True when the waveform's RMS level is below ``threshold_db`` dBFS."""
    return rms_db(np.asarray(wave)) < threshold_db


def _decode(path: Path, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    sf = _sf()
    try:
        data, sr = sf.read(_native(path), start=start, frames=frames, dtype="float32",
                           always_2d=True)
    except _DECODE_ERRORS as exc:
        raise AudioError(
            f"{path}: cannot decode audio ({_short(exc)}); the file may be truncated or "
            f"not an audio file"
        ) from None
    return data, int(sr)


def load_audio(path: str | os.PathLike, sample_rate: int, *,
               max_duration_s: float | None = None, min_duration_s: float = 0.0) -> np.ndarray:
    """Decode a file to a float32 mono waveform at ``sample_rate``, validated.

    Raises AudioError naming the file for: a missing or empty file, undecodable data, a
    truncated stream, NaN/inf samples, a clip shorter than ``min_duration_s``, or one
    longer than ``max_duration_s`` (never truncated: window it with ``iter_audio_windows``).
    """
    info = audio_info(path)
    where = info.path
    if max_duration_s is not None and info.duration_s > max_duration_s + 1e-6:
        raise AudioError(
            f"{where}: audio is too long: {info.duration_s:.2f} s > max_duration_s="
            f"{max_duration_s} s; raise the limit or encode it in windows (window_s)"
        )
    if info.backend == PYAV:
        from mullm.audio_av import decode_all

        data, sr = decode_all(where)  # checked for truncation and damage while decoding
    else:
        data, sr = _decode(Path(where))
    # libsndfile decodes what it can of a truncated stream; a big shortfall against the
    # header means the file is damaged, and we refuse rather than return part of it.
    if info.frames > 0 and data.shape[0] < 0.99 * info.frames - sr * 0.05:
        raise AudioError(
            f"{where}: truncated audio: header says {info.frames} frames "
            f"({info.duration_s:.2f} s), decoded only {data.shape[0]}"
        )
    wave = validate_waveform(to_mono(data), where, sample_rate=sr)
    wave = resample(wave, sr, sample_rate)
    return validate_waveform(wave, where, sample_rate=sample_rate,
                             min_duration_s=min_duration_s)


@dataclass
class AudioWindow:
    """One window of a long file: its samples and where it starts and ends (seconds)."""

    wave: np.ndarray
    start_s: float
    end_s: float
    index: int


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Window start offsets covering every sample: the last window ends at the last sample."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be > 0 samples")
    if hop > window:
        raise ValueError(f"hop ({hop}) > window ({window}) would skip audio")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(starts[-1] + hop)  # a final, shorter window reaches the end
    return starts


def split_windows(wave: np.ndarray, sample_rate: int, window_s: float,
                  hop_s: float | None = None) -> list[AudioWindow]:
    """Split an in-memory waveform into windows of ``window_s`` every ``hop_s`` seconds."""
    window = round(window_s * sample_rate)
    hop = round((hop_s or window_s) * sample_rate)
    out = []
    for i, s in enumerate(window_starts(len(wave), window, hop)):
        chunk = wave[s:s + window]
        out.append(AudioWindow(chunk, s / sample_rate, (s + len(chunk)) / sample_rate, i))
    return out


def iter_audio_windows(path: str | os.PathLike, sample_rate: int, window_s: float,
                       hop_s: float | None = None, *, min_duration_s: float = 0.0,
                       max_duration_s: float | None = None) -> Iterator[AudioWindow]:
    """Decode a long file window by window (bounded memory), resampled, mono, validated.

    Windows follow ``window_starts`` on the target sample rate, so every second of the file
    is covered exactly as ``split_windows`` would cover the fully decoded waveform.
    """
    info = audio_info(path)
    where = info.path
    if max_duration_s is not None and info.duration_s > max_duration_s + 1e-6:
        raise AudioError(
            f"{where}: audio is too long: {info.duration_s:.2f} s > {max_duration_s} s"
        )
    if info.duration_s < min_duration_s:
        raise AudioError(
            f"{where}: audio is too short: {info.duration_s:.3f} s < minimum "
            f"{min_duration_s} s"
        )
    native_sr = info.sample_rate
    total = math.floor(info.frames * sample_rate / native_sr)
    window = round(window_s * sample_rate)
    hop = round((hop_s or window_s) * sample_rate)
    starts = window_starts(max(total, 1), window, hop)
    if info.backend == PYAV:
        yield from _stream_windows(info, sample_rate, starts, window, total)
        return
    for i, s in enumerate(starts):
        # Decode the native-rate span with a small margin so the resampler's edges fall
        # outside the kept part.
        margin = int(native_sr * 0.05)
        a = math.floor(s * native_sr / sample_rate)
        b = math.ceil(min(s + window, total) * native_sr / sample_rate)
        lo, hi = max(0, a - margin), min(info.frames, b + margin)
        data, sr = _decode(Path(where), start=lo, frames=hi - lo)
        if data.shape[0] < (hi - lo) - sr * 0.05:
            raise AudioError(
                f"{where}: truncated audio: expected {hi - lo} frames at "
                f"{lo / native_sr:.2f} s, decoded {data.shape[0]}"
            )
        chunk = validate_waveform(to_mono(data), where, sample_rate=sr)
        chunk = resample(chunk, sr, sample_rate)
        off = round((a - lo) * sample_rate / native_sr)
        n = min(s + window, total) - s
        chunk = chunk[off:off + n]
        if len(chunk) < n:
            chunk = np.pad(chunk, (0, n - len(chunk)))
        yield AudioWindow(chunk, s / sample_rate, (s + n) / sample_rate, i)


def _stream_windows(info: AudioInfo, sample_rate: int, starts: list[int], window: int,
                    total: int) -> Iterator[AudioWindow]:
    """Windows of a PyAV-decoded file, read front to back (compressed formats do not seek
    sample-exactly): native blocks are mixed to mono, resampled by one streaming soxr
    resampler and kept only until the next window's start (memory: about one window)."""
    from mullm.audio_av import decode_blocks

    where = info.path
    stream = None
    if info.sample_rate != sample_rate:
        import soxr

        stream = soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32",
                                     quality="HQ")
    blocks = decode_blocks(where)
    pending: list[np.ndarray] = []  # resampled samples from ``origin`` on
    origin, have, done = 0, 0, False
    try:
        for i, s in enumerate(starts):
            end = min(s + window, total)
            while origin + have < end and not done:
                block = next(blocks, None)
                if block is None:
                    done = True
                    out = stream.resample_chunk(np.zeros(0, np.float32), last=True) \
                        if stream is not None else np.zeros(0, np.float32)
                else:
                    mono = validate_waveform(to_mono(block[0]), where,
                                             sample_rate=info.sample_rate)
                    out = stream.resample_chunk(mono) if stream is not None else mono
                pending.append(np.asarray(out, dtype=np.float32))
                have += len(out)
            buf = np.concatenate(pending) if pending else np.zeros(0, np.float32)
            chunk = buf[s - origin:end - origin]
            if len(chunk) < end - s:  # the resampler's last few samples: pad, as the
                chunk = np.pad(chunk, (0, end - s - len(chunk)))  # seeking path does
            yield AudioWindow(chunk, s / sample_rate, end / sample_rate, i)
            keep_from = starts[i + 1] if i + 1 < len(starts) else end
            pending, origin = [buf[max(0, keep_from - origin):]], max(origin, keep_from)
            have = len(pending[0])
    finally:
        blocks.close()


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int,
              subtype: str | None = None) -> Path:
    """Write a mono (samples,) or (samples, channels) waveform; PCM_16 unless ``subtype``.

    The format follows the extension when libsndfile knows it (``.flac``, ``.ogg``), else
    WAV (also for a name without extension)."""
    sf = _sf()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(wave, dtype=np.float32)
    if subtype is None or subtype.startswith("PCM"):
        arr = np.clip(arr, -1.0, 1.0)  # integer PCM would wrap around otherwise
    # The format follows a known extension (.flac, .ogg ...); anything else is WAV.
    ext = path.suffix.lstrip(".").upper()
    fmt = None if ext in sf.available_formats() else "WAV"
    sf.write(_native(path), arr, sample_rate, subtype=subtype, format=fmt)
    return path


# ---------------------------------------------------------------------- synthetic clips

def _tone(freq: float, n: int, sr: int, timbre: str) -> np.ndarray:
    t = np.arange(n) / sr
    if timbre == "sine":
        return np.sin(2 * np.pi * freq * t)
    # A few harmonics give a recognisably different spectrum envelope per timbre.
    if timbre == "square":
        amps = {k: 1.0 / k for k in (1, 3, 5, 7, 9)}
    elif timbre == "saw":
        amps = {k: 1.0 / k for k in range(1, 9)}
    elif timbre == "organ":
        amps = {1: 1.0, 2: 0.5, 4: 0.3, 8: 0.15}
    else:
        raise ValueError(f"unknown timbre {timbre!r}; expected sine, square, saw or organ")
    out = np.zeros(n)
    for k, a in amps.items():
        if freq * k < sr / 2:
            out += a * np.sin(2 * np.pi * freq * k * t)
    return out / sum(amps.values())


def synth_clip(key: str = "C", mode: str = "major", tempo_bpm: float = 100.0,
               duration_s: float = 4.0, sample_rate: int = 16000, timbre: str = "saw",
               amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Synthesise a short chord progression (I-IV-V-I) with a beat at ``tempo_bpm``.

    Numpy only; used by tests and the README demo. Each beat re-attacks the current chord
    with a decaying envelope, so the key is audible in the chroma and the tempo in onsets.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if duration_s <= 0 or tempo_bpm <= 0:
        raise ValueError(f"duration_s and tempo_bpm must be > 0, got {duration_s}, {tempo_bpm}")
    rng = np.random.default_rng(seed)
    tonic = 48 + pitch_class(key)  # MIDI note in the octave of C3
    third = 3 if mode == "minor" else 4
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    if mode == "minor":
        chords[1] = (5, 8, 12)  # iv
    n = round(duration_s * sample_rate)
    beat = 60.0 / tempo_bpm
    out = np.zeros(n)
    beats_per_chord = 2
    t0, b = 0.0, 0
    while t0 < duration_s:
        chord = chords[(b // beats_per_chord) % len(chords)]
        start = round(t0 * sample_rate)
        seg = min(round(beat * sample_rate), n - start)
        if seg <= 0:
            break
        env = np.exp(-np.arange(seg) / (0.25 * beat * sample_rate))
        for iv in chord:
            f = 440.0 * 2 ** ((tonic + iv - 69) / 12)
            out[start:start + seg] += env * _tone(f, seg, sample_rate, timbre)
        # Bass note an octave below the root anchors the key.
        fb = 440.0 * 2 ** ((tonic + chord[0] - 12 - 69) / 12)
        out[start:start + seg] += 0.7 * env * _tone(fb, seg, sample_rate, timbre)
        t0 += beat
        b += 1
    out += 1e-3 * rng.standard_normal(n)  # a little noise: real recordings are never clean
    peak = np.max(np.abs(out)) or 1.0
    return (amplitude * out / peak).astype(np.float32)


def synth_tone(freq: float = 440.0, duration_s: float = 1.0, sample_rate: int = 16000,
               amplitude: float = 0.5) -> np.ndarray:
    """A pure sine tone (float32), for tests."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# The name the design brief uses; same function.
synth_tone_clip = synth_clip


def pad_batch(waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad mono waveforms with zeros into (B, max_len) plus their lengths (B,)."""
    if len(waves) == 0:
        raise ValueError("pad_batch needs at least one waveform")
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    out = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, :len(w)] = w
    return out, lengths


__all__ = [
    "AUDIO_EXTENSIONS", "AudioInfo", "AudioWindow", "audio_info", "is_silent",
    "iter_audio_windows", "load_audio", "pad_batch", "resample", "rms_db",
    "split_windows", "synth_clip", "synth_tone", "synth_tone_clip", "to_mono",
    "validate_waveform", "window_starts", "write_wav",
]
