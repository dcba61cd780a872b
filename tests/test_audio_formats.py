"""Formats libsndfile cannot read or only estimates: decoded with PyAV to their true end.

Every fixture is encoded here with PyAV (mullm.testing_audio), so nothing binary is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.audio import PYAV, audio_info, iter_audio_windows, load_audio, write_wav
from mullm.errors import AudioError
from mullm.testing_audio import silence_then_noise, sine, vbr_mp3_without_xing, write_encoded

# name -> (muxer, encoder, sample rate, extra settings): the kinds of files phones, music
# stores and old collections hold.
FORMATS = {
    "memo.m4a": ("mp4", "aac", 44100, {}),
    "raw.aac": ("adts", "aac", 44100, {}),
    "voice.opus": ("ogg", "libopus", 48000, {}),
    "old.wma": ("asf", "wmav2", 44100, {"bit_rate": 128000}),
    "cbr.mp3": ("mp3", "libmp3lame", 44100, {"bit_rate": 128000}),
    "video.mp4": ("mp4", "aac", 22050, {}),
}


def _make(path: Path, duration_s: float = 5.0, freq: float = 440.0) -> Path:
    container, codec, sr, extra = FORMATS[path.name]
    return write_encoded(path, sine(duration_s, sr, freq), sr, container=container,
                         codec=codec, **extra)


def _peak_hz(wave: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spec) * sr / len(wave))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_ffmpeg_format_decodes_to_its_length(tmp_path: Path, name: str) -> None:
    path = _make(tmp_path / name, 5.0, freq=660.0)
    info = audio_info(path)
    # Encoders add up to ~50 ms of priming/padding; nothing is cut or stretched.
    assert info.duration_s == pytest.approx(5.0, abs=0.07), info
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == pytest.approx(5.0 * 16000, abs=0.07 * 16000)
    assert abs(_peak_hz(wave[8000:-8000], 16000) - 660.0) < 2.0
    assert 0.3 < np.abs(wave[8000:-8000]).max() < 0.7
    # Windows read front to back cover the file and agree with the whole decode.
    wins = list(iter_audio_windows(path, 16000, window_s=2.0))
    assert [w.start_s for w in wins] == [0.0, 2.0, 4.0]
    assert wins[-1].end_s == pytest.approx(info.duration_s, abs=1e-3)
    joined = np.concatenate([w.wave for w in wins])
    n = min(len(joined), len(wave))
    np.testing.assert_allclose(joined[:n], wave[:n], atol=1e-3)


def test_vbr_mp3_without_xing_header_is_its_true_40_s(tmp_path: Path) -> None:
    path = vbr_mp3_without_xing(tmp_path / "vbr.mp3", 40.0)
    info = audio_info(path)
    assert info.backend == PYAV
    assert info.duration_s == pytest.approx(40.0, abs=0.1)  # libsndfile said 6.68-7.8 s
    wave = load_audio(path, 16000)
    assert len(wave) / 16000 == pytest.approx(40.0, abs=0.1)
    assert np.abs(wave[-16000:]).max() > 0.3  # the last second is there, not silence
    wins = list(iter_audio_windows(path, 16000, window_s=10.0, hop_s=5.0))
    assert len(wins) == 8 and wins[-1].end_s == pytest.approx(info.duration_s, abs=1e-3)
    assert all(len(w.wave) == 160000 for w in wins[:-1])


@pytest.mark.parametrize("xing", [True, False])
def test_intact_vbr_mp3_silence_then_noise_is_not_called_truncated(tmp_path: Path,
                                                                   xing: bool) -> None:
    path = silence_then_noise(tmp_path / "sn.mp3", 5.0, 20.0, xing=xing)
    assert audio_info(path).duration_s == pytest.approx(25.0, abs=0.1)
    wave = load_audio(path, 16000)
    assert len(wave) / 16000 == pytest.approx(25.0, abs=0.1)
    assert np.abs(wave[16000:4 * 16000]).max() < 1e-3  # the silence
    assert np.sqrt(np.mean(wave[6 * 16000:] ** 2)) > 0.1  # the noise, to the end


@pytest.mark.parametrize("name", ["memo.m4a", "raw.aac", "voice.opus", "old.wma", "cbr.mp3"])
def test_truncated_files_are_refused_by_name(tmp_path: Path, name: str) -> None:
    path = _make(tmp_path / name, 5.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=rf"{name}: .*(truncated|cannot decode)") as exc:
        load_audio(path, 16000)
    assert len(str(exc.value).splitlines()) == 1


def test_truncated_vbr_mp3_without_header_is_refused(tmp_path: Path) -> None:
    path = vbr_mp3_without_xing(tmp_path / "cut.mp3", 20.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 + 17])  # ends inside a frame
    with pytest.raises(AudioError, match=r"cut.mp3: truncated MP3: the last frame .* is cut "
                                         r"off"):
        audio_info(path)


def test_names_that_are_not_utf8_decode(tmp_path: Path) -> None:
    wav = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.wav"))
    write_wav(wav, sine(1.0, 16000), 16000)
    assert wav.exists() and os.fsencode(wav).endswith(b"caf\xe9.wav")
    assert audio_info(wav).duration_s == pytest.approx(1.0)
    assert len(load_audio(wav, 8000)) == 8000
    m4a = Path(os.fsdecode(os.fsencode(tmp_path) + b"/m\xfcsic.m4a"))
    _make(tmp_path / "memo.m4a").rename(m4a)
    assert audio_info(m4a).backend == PYAV
    assert len(list(iter_audio_windows(m4a, 16000, 1.0))) == 6  # 5.02 s: five and a bit


def test_files_that_are_not_audio_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("liner notes\n" * 50)
    with pytest.raises(AudioError, match=r"notes.txt: cannot decode audio"):
        audio_info(tmp_path / "notes.txt")
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n")
    with pytest.raises(AudioError, match=r"list.m3u8: cannot decode audio"):
        audio_info(tmp_path / "list.m3u8")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioError, match=r"random.bin: cannot decode audio"):
        load_audio(tmp_path / "random.bin", 16000)


def test_extensionless_and_misnamed_files_decode_by_content(tmp_path: Path) -> None:
    sf.write(tmp_path / "take1", sine(1.0, 16000), 16000, format="WAV")
    assert audio_info(tmp_path / "take1").duration_s == pytest.approx(1.0)
    _make(tmp_path / "memo.m4a").rename(tmp_path / "memo.wav")  # AAC under a .wav name
    assert audio_info(tmp_path / "memo.wav").backend == PYAV


def test_info_is_not_served_stale_after_the_file_changes(tmp_path: Path) -> None:
    path = vbr_mp3_without_xing(tmp_path / "a.mp3", 3.0)
    assert audio_info(path).duration_s == pytest.approx(3.0, abs=0.1)
    vbr_mp3_without_xing(tmp_path / "b.mp3", 6.0).replace(path)
    assert audio_info(path).duration_s == pytest.approx(6.0, abs=0.1)


def test_damaged_frames_mid_file_are_refused_with_their_time(tmp_path: Path) -> None:
    path = _make(tmp_path / "raw.aac", 5.0)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 300] = np.random.default_rng(0).bytes(300)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"raw.aac: truncated or damaged aac audio: \d+ "
                                         r"frame\(s\) could not be decoded \(first at 2\.\d\d s"):
        audio_info(path)
