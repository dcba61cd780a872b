"""mullm.audio: decoding, mixing, resampling, validation, windows and the bad-input list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.audio import (
    audio_info,
    is_silent,
    iter_audio_windows,
    load_audio,
    pad_batch,
    split_windows,
    synth_clip,
    synth_tone,
    synth_tone_clip,
    validate_waveform,
    window_starts,
    write_wav,
)
from mullm.errors import AudioError
from mullm.utils.music import pitch_class


def test_roundtrip_wav(tmp_path: Path) -> None:
    wave = synth_clip(duration_s=1.0, sample_rate=16000)
    path = write_wav(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    out = load_audio(path, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_array_equal(out, wave)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_other_formats_decode(tmp_path: Path, fmt: str) -> None:
    wave = synth_tone(440.0, 1.0, 16000, amplitude=0.5)
    path = tmp_path / f"a.{fmt}"
    sf.write(str(path), wave, 16000)
    out = load_audio(path, 16000)
    assert abs(len(out) - 16000) < 16000 * 0.1  # mp3 encoders add padding frames
    assert 0.2 < np.abs(out).max() < 0.7


def test_resample_8k_mono(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "8k.wav", synth_tone(440.0, 1.0, 8000), 8000)
    out = load_audio(path, 16000)
    assert len(out) == 16000
    # The tone's frequency survives resampling.
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) - 440) <= 1


def test_96k_six_channels_mixed_down(tmp_path: Path) -> None:
    tone = synth_tone(1000.0, 0.5, 96000)
    multi = np.stack([tone * (c + 1) / 6 for c in range(6)], axis=1)
    path = tmp_path / "surround.wav"
    sf.write(str(path), multi, 96000, subtype="FLOAT")
    out = load_audio(path, 24000)
    assert out.ndim == 1 and len(out) == 12000
    expected_peak = 0.5 * np.mean([(c + 1) / 6 for c in range(6)])
    assert abs(np.abs(out[1000:-1000]).max() - expected_peak) < 0.02


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found") as exc:
        load_audio(tmp_path / "nope.wav", 16000)
    assert "nope.wav" in str(exc.value)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.wav: file is empty \(0 bytes\)"):
        load_audio(empty, 16000)
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(tmp_path, 16000)


def test_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="notes.wav: cannot decode audio"):
        load_audio(path, 16000)


def test_truncated_ogg(tmp_path: Path) -> None:
    path = tmp_path / "cut.ogg"
    sf.write(str(path), synth_clip(duration_s=5.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="cut.ogg"):
        load_audio(path, 16000)


def test_truncated_wav_flac_mp3(tmp_path: Path) -> None:
    for fmt in ("wav", "flac", "mp3"):
        path = tmp_path / f"cut.{fmt}"
        sf.write(str(path), synth_clip(duration_s=5.0), 16000)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        with pytest.raises(AudioError, match=f"cut.{fmt}: .*(truncated|cannot decode)"):
            load_audio(path, 16000)


def test_nan_float_wav(tmp_path: Path) -> None:
    wave = synth_clip(duration_s=1.0)
    wave[8000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: audio contains NaN or inf samples \(first "
                                         r"at 0.500 s\)"):
        load_audio(path, 16000)


def test_too_short_and_too_long(tmp_path: Path) -> None:
    short = write_wav(tmp_path / "short.wav", synth_tone(440, 0.05), 16000)
    with pytest.raises(AudioError, match=r"short.wav: audio is too short: 0.050 s < minimum 0.1"):
        load_audio(short, 16000, min_duration_s=0.1)
    assert len(load_audio(short, 16000)) == 800  # fine without a minimum
    long = write_wav(tmp_path / "long.wav", synth_tone(440, 3.0, 8000), 8000)
    with pytest.raises(AudioError, match=r"long.wav: audio is too long: 3.00 s > "
                                         r"max_duration_s=2.0.*window"):
        load_audio(long, 16000, max_duration_s=2.0)


def test_silence_is_flagged_not_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    wave = load_audio(path, 16000)
    assert is_silent(wave)
    assert not is_silent(synth_clip(duration_s=0.5))
    assert is_silent(1e-5 * np.random.default_rng(0).standard_normal(1000).astype(np.float32))


def test_validate_waveform_errors() -> None:
    with pytest.raises(AudioError, match="clip7: audio is empty"):
        validate_waveform(np.zeros(0, np.float32), "clip7")
    with pytest.raises(AudioError, match="mono"):
        validate_waveform(np.zeros((10, 2), np.float32), "x")
    with pytest.raises(AudioError, match="float"):
        validate_waveform(np.zeros(10, np.int16), "x")
    with pytest.raises(AudioError, match="index 3"):
        validate_waveform(np.array([0, 0, 0, np.inf], np.float32), "x")
    out = validate_waveform(np.zeros(10, np.float64), "x")
    assert out.dtype == np.float32


def test_window_starts_cover_everything() -> None:
    assert window_starts(10, 20, 20) == [0]
    assert window_starts(100, 30, 30) == [0, 30, 60, 90]
    assert window_starts(90, 30, 30) == [0, 30, 60]
    assert window_starts(100, 30, 20) == [0, 20, 40, 60, 80]
    for n, w, h in [(1000, 64, 64), (1001, 64, 32), (7, 3, 1)]:
        covered = np.zeros(n, bool)
        for s in window_starts(n, w, h):
            covered[s:s + w] = True
        assert covered.all()
    with pytest.raises(ValueError, match="skip"):
        window_starts(10, 2, 3)


def test_split_windows_in_memory() -> None:
    wave = np.arange(100, dtype=np.float32)
    wins = split_windows(wave, 10, window_s=3.0)
    assert [w.start_s for w in wins] == [0.0, 3.0, 6.0, 9.0]
    assert wins[-1].end_s == 10.0 and len(wins[-1].wave) == 10
    np.testing.assert_array_equal(np.concatenate([w.wave for w in wins]), wave)


def test_iter_audio_windows_long_file_bounded(tmp_path: Path) -> None:
    """A 20-minute file (written at 2 kHz to stay small) is read window by window."""
    sr_file = 2000
    minutes = 20
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", sr_file, 1, subtype="PCM_16") as f:
        for m in range(minutes):
            t = np.arange(60 * sr_file) / sr_file
            f.write((0.3 * np.sin(2 * np.pi * (100 + 10 * m) * t)).astype(np.float32))
    info = audio_info(path)
    assert abs(info.duration_s - 1200) < 1e-6
    wins = list(iter_audio_windows(path, 4000, window_s=60.0))
    assert len(wins) == 20
    assert wins[0].start_s == 0.0 and wins[-1].end_s == pytest.approx(1200.0)
    assert all(len(w.wave) == 240000 for w in wins)
    # Each window holds its own minute's tone (the chunking lines up with the file).
    for m in (0, 7, 19):
        spec = np.abs(np.fft.rfft(wins[m].wave))
        assert abs(np.argmax(spec) / 60.0 - (100 + 10 * m)) < 0.5
    # And matches decoding the whole file then splitting it, away from the edges.
    whole = load_audio(path, 4000)
    ref = split_windows(whole, 4000, 60.0)
    for a, b in zip(wins, ref, strict=True):
        np.testing.assert_allclose(a.wave[2000:-2000], b.wave[2000:-2000], atol=2e-3)


def test_synth_helpers() -> None:
    clip = synth_clip("Eb", "minor", tempo_bpm=90, duration_s=2.0, sample_rate=8000)
    assert clip.dtype == np.float32 and len(clip) == 16000
    assert np.abs(clip).max() == pytest.approx(0.3, rel=1e-5)
    assert synth_tone_clip is synth_clip
    assert pitch_class("Db") == pitch_class("C#") == 1
    with pytest.raises(ValueError, match="unknown key"):
        pitch_class("H")
    x, n = pad_batch([np.ones(3, np.float32), np.ones(5, np.float32)])
    assert x.shape == (2, 5) and n.tolist() == [3, 5] and x[0, 3:].sum() == 0
