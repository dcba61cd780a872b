"""MIR estimators (librosa + key profiles) and label-preserving audio augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import librosa  # noqa: F401 - a missing dependency must fail, not skip
import numpy as np
import pytest
import soundfile as sf

from mullm.data import mir  # noqa: E402
from mullm.data.audio_augment import augment_metadata, augment_row, op_name, parse_op  # noqa: E402
from mullm.eval.mir_metrics import tempo_relation  # noqa: E402
from mullm.utils.music import KRUMHANSL, PITCH_NAMES, pitch_class  # noqa: E402

SR = 22050


def _tone(freqs: list[float], seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs) * 0.3).astype(np.float32)


def _midi_hz(m: int) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def _cadence(tonic: int, minor: bool) -> np.ndarray:
    """i-iv-V-i (or I-IV-V-I) with a harmonic-minor dominant, 1 s per chord, sine partials."""
    third = 3 if minor else 4
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    out = [_tone([_midi_hz(48 + tonic + i) for i in c] + [_midi_hz(36 + tonic + c[0])], 1.0)
           for c in chords]
    return np.concatenate(out * 2)


def _clicks(bpm: float, seconds: float) -> np.ndarray:
    # decaying noise bursts: broadband onsets, like a hi-hat
    y = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = np.random.default_rng(0).standard_normal(1500) * np.exp(-np.arange(1500) / 200)
    period = 60.0 / bpm
    for k in range(int(seconds / period)):
        i = int(k * period * SR)
        n = min(len(burst), len(y) - i)
        y[i:i + n] += (burst[:n] * (0.5 if k % 4 == 0 else 0.3)).astype(np.float32)
    return y


@pytest.mark.parametrize("tonic, minor", [(0, False), (9, True), (6, True), (10, False)])
def test_key_from_synthetic_cadence(tonic: int, minor: bool) -> None:
    for profile in ("krumhansl", "temperley"):
        k, m, _ = mir.estimate_key(_cadence(tonic, minor), profile=profile)
        assert (k, m) == (PITCH_NAMES[tonic], "minor" if minor else "major")


def test_key_scores_on_profiles() -> None:
    # a profile correlates perfectly with itself rotated to its own key
    s = mir.key_scores(np.roll(np.array(KRUMHANSL["minor"]), 4), "krumhansl")
    assert int(np.argmax(s)) == 12 + 4 and s.max() == pytest.approx(1.0)


def test_tempo_of_click_track() -> None:
    bpm, beats = mir.estimate_tempo(_clicks(120.0, 12.0))
    assert tempo_relation(120.0, bpm) == "exact"
    assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.03)


def test_chords_follow_the_cadence() -> None:
    y = _cadence(0, False)
    beats = np.arange(0.0, 8.0, 1.0)
    labels = [lab for _, _, lab in mir.estimate_chords(y, beats=beats)]
    assert "C:maj" in labels and "G:maj" in labels and "F:maj" in labels


def test_label_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.wav", _cadence(2, False), SR)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    rows = mir.label_folder(tmp_path, tmp_path, errors_path=tmp_path / "errors.jsonl")
    assert [r["id"] for r in rows] == ["a/x"]
    assert (rows[0]["key"], rows[0]["mode"]) == ("D", "major") and rows[0]["audio"] == "a/x.wav"
    assert "bad.wav" in (tmp_path / "errors.jsonl").read_text()


# ---- audio augmentation ---------------------------------------------------------------------

def _peak_hz(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / SR)[int(np.argmax(spec))])


def test_pitch_shift_moves_tone_and_key() -> None:
    row = {"id": "t", "key": "A", "mode": "minor", "tempo_bpm": 100.0, "tempo_class": "moderate"}
    y = _tone([440.0], 2.0)
    new, out = augment_row(row, y, SR, "pitch", 2, np.random.default_rng(0))
    assert _peak_hz(out) == pytest.approx(440.0 * 2 ** (2 / 12), rel=0.01)
    assert (new["key"], new["mode"], new["augmentation"], new["id"]) == ("B", "minor",
                                                                         "pitch+2", "t-pitch+2")
    assert len(out) == len(y)


def test_pitch_shift_moves_estimated_key() -> None:
    y = _cadence(9, True)
    k0, m0, _ = mir.estimate_key(y)
    row = {"id": "c", "key": "A", "mode": "minor"}
    for n in (-3, 5):
        new, out = augment_row(row, y, SR, "pitch", n, np.random.default_rng(0))
        k1, m1, _ = mir.estimate_key(out)
        assert (pitch_class(k1) - pitch_class(k0)) % 12 == n % 12 and m1 == m0
        assert new["key"] == PITCH_NAMES[(9 + n) % 12]


def test_stretch_gain_noise_labels() -> None:
    row = {"id": "s", "key": "C", "mode": "major", "tempo_bpm": 120.0, "tempo_class": "moderate",
           "duration_s": 12.0}
    y = _clicks(120.0, 12.0)
    rng = np.random.default_rng(0)
    new, out = augment_row(row, y, SR, "stretch", 1.1, rng)
    assert new["tempo_bpm"] == pytest.approx(132.0) and new["tempo_class"] == "fast"
    assert new["duration_s"] == pytest.approx(12.0 / 1.1, abs=0.05)
    assert tempo_relation(132.0, mir.estimate_tempo(out)[0]) == "exact"
    for kind, amount in (("gain", -6.0), ("noise", 20.0)):
        new, out = augment_row(row, y, SR, kind, amount, rng)
        assert {k: new[k] for k in ("key", "tempo_bpm")} == {"key": "C", "tempo_bpm": 120.0}
        assert new["augmentation"] == op_name(kind, amount)
    with pytest.raises(ValueError, match="pitch:N"):
        parse_op("speed:2")


def test_augment_metadata_keeps_piece_and_split(tmp_path: Path) -> None:
    d = tmp_path / "c"
    (d / "audio").mkdir(parents=True)
    sf.write(d / "audio" / "a.wav", _cadence(0, False)[:SR * 2], SR, subtype="PCM_16")
    row = {"id": "a", "audio": "audio/a.wav", "key": "C", "mode": "major", "tempo_bpm": 90.0,
           "tempo_class": "moderate", "piece": "p", "split": "valid", "duration_s": 2.0}
    (d / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "aug" / "metadata.jsonl"
    path, n, bad = augment_metadata(d / "metadata.jsonl", out, ["pitch:+1", "stretch:0.8"])
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert (n, bad) == (3, 0) and [r["id"] for r in rows] == ["a", "a-pitch+1", "a-stretch0.80"]
    assert all(r["split"] == "valid" and r["piece"] == "p" for r in rows)
    assert rows[1]["key"] == "C#" and rows[2]["tempo_class"] == "slow"
    assert all((out.parent / r["audio"]).is_file() for r in rows)


def test_cli_augment_mir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mullm.cli import main
    from mullm.data.schema import read_conversations

    (tmp_path / "music").mkdir()
    sf.write(tmp_path / "music" / "song.wav", _cadence(7, False), SR)
    out = tmp_path / "o" / "conv.jsonl"
    assert main(["augment", "--mir", str(tmp_path / "music"), "--out", str(out),
                 "--per-clip", "2"]) == 0
    labels = [json.loads(x) for x in (tmp_path / "o" / "conv.labels.jsonl").read_text()
              .splitlines()]
    assert (labels[0]["key"], labels[0]["mode"], labels[0]["source"]) == ("G", "major", "mir")
    convs = read_conversations(out)
    assert convs and all(c.audio == ["../music/song.wav"] for c in convs)
    assert any(c.meta["template"] == "closed" and c.turns[1]["content"] == "G major"
               for c in convs)
