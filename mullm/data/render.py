"""Offline FluidSynth rendering of note lists to a mono float buffer (no audio device).

A fresh synthesizer is built for every clip so that no reverb tail or voice state leaks from
one clip into the next: the same notes always give the same samples, whichever worker renders
them and in whatever order.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

DEBIAN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_SAMPLE_RATE = 22050
# One idle synth per soundfont and process keeps FluidSynth's sample cache warm, so the fresh
# synth each clip gets loads the soundfont 3-4x faster (the samples are shared, not copied).
_KEEPERS: dict[str, object] = {}


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: ``path``, else Debian's FluidR3_GM, else pretty_midi's TimGM6mb."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"soundfont {p} does not exist; pass an .sf2 file")
        return p
    if DEBIAN_SOUNDFONT.is_file():
        return DEBIAN_SOUNDFONT
    try:
        import pretty_midi
    except ImportError:
        pretty_midi = None
    if pretty_midi is not None:
        p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        if p.is_file():
            return p
    raise FileNotFoundError(
        "no General MIDI soundfont found: apt-get install fluid-soundfont-gm "
        f"(gives {DEBIAN_SOUNDFONT}), pip install pretty_midi (ships TimGM6mb.sf2), "
        "or pass --soundfont PATH"
    )


def _fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as e:  # OSError: the Python package found no libfluidsynth
        raise ImportError(
            "rendering needs pyfluidsynth and the FluidSynth library: "
            "pip install pyfluidsynth; apt-get install libfluidsynth3"
        ) from e
    return fluidsynth


def render_events(
    notes: Iterable[tuple[float, float, int, int, int]],
    programs: Mapping[int, int],
    *,
    soundfont: str | os.PathLike | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    drum_channel: int | None = 9,
    tail_s: float = 1.0,
    reverb: bool = True,
    length_s: float = 0.0,
) -> np.ndarray:
    """Render ``(start_s, end_s, pitch, velocity, channel)`` notes to mono float32 audio.

    The output lasts until the later of the last note-off and ``length_s`` (a closing rest
    still counts), plus ``tail_s`` for the release.
    """
    fs = _fluidsynth()
    sf_path = str(find_soundfont(soundfont))
    if sf_path not in _KEEPERS:
        keeper = fs.Synth(samplerate=float(sample_rate))
        keeper.sfload(sf_path)
        _KEEPERS[sf_path] = keeper
    synth = fs.Synth(gain=0.5, samplerate=float(sample_rate))
    try:
        synth.setting("synth.reverb.active", 1 if reverb else 0)
        synth.setting("synth.chorus.active", 0)  # chorus modulation adds nothing we label
        sfid = synth.sfload(sf_path)
        if sfid < 0:
            raise RuntimeError(f"FluidSynth could not load soundfont {sf_path}")
        for ch, prog in programs.items():
            synth.program_select(int(ch), sfid, 0, int(prog))
        if drum_channel is not None:
            synth.program_select(int(drum_channel), sfid, 128, 0)
        events: list[tuple[int, int, int, int, int]] = []  # (sample, order, ch, pitch, vel)
        end = int(round(length_s * sample_rate))
        for start, stop, pitch, vel, ch in notes:
            s0 = int(round(start * sample_rate))
            s1 = max(s0 + 1, int(round(stop * sample_rate)))
            # note-offs sort before note-ons at the same sample so repeated notes retrigger
            events.append((s0, 1, int(ch), int(pitch), int(vel)))
            events.append((s1, 0, int(ch), int(pitch), 0))
            end = max(end, s1)
        events.sort()
        total = end + int(round(tail_s * sample_rate))
        out = np.zeros(total, dtype=np.float32)
        left = np.zeros(total, dtype=np.float32)
        right = np.zeros(total, dtype=np.float32)
        write = fs._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                          ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write.restype = ctypes.c_int
        pos = 0

        def advance(to: int) -> None:
            nonlocal pos
            while pos < to:
                n = min(to - pos, 8192)
                lp = left[pos:].ctypes.data
                rp = right[pos:].ctypes.data
                if write(synth.synth, n, lp, 0, 1, rp, 0, 1) != 0:
                    raise RuntimeError("fluid_synth_write_float failed")
                pos += n

        for sample, order, ch, pitch, vel in events:
            advance(min(sample, total))
            if order == 1:
                synth.noteon(ch, pitch, max(1, min(127, vel)))
            else:
                synth.noteoff(ch, pitch)
        advance(total)
        out[:] = 0.5 * (left + right)
        return out
    finally:
        synth.delete()


def set_loudness(audio: np.ndarray, rms_db: float, peak: float = 0.98) -> np.ndarray:
    """Scale to an RMS level in dBFS, then down again if needed so the peak stays below ``peak``."""
    x = audio.astype(np.float32)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    if rms <= 0:
        return x
    x = x * np.float32(10 ** (rms_db / 20) / rms)
    m = float(np.max(np.abs(x)))
    if m > peak:
        x = x * np.float32(peak / m)
    return x


def fade_out(audio: np.ndarray, sample_rate: int, seconds: float = 0.5) -> np.ndarray:
    """Linear fade over the last ``seconds`` (so cut excerpts do not click)."""
    n = min(len(audio), int(seconds * sample_rate))
    if n > 0:
        audio = audio.copy()
        audio[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return audio
