"""MIR metrics on mir_eval: the MIREX key weights of mir_eval's documentation table, tempo
Acc1 / Acc2 at its relative tolerance, and evaluate_mir on two rendered clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.eval.mir_metrics import (
    key_label,
    key_relation,
    mirex_key_score,
    tempo_accuracy,
    tempo_relation,
)


@pytest.mark.parametrize("ref,est,score,relation", [
    # mir_eval.key.weighted_score's documented table (MIREX 2005)
    ("C major", "C major", 1.0, "exact"),
    ("C major", "G major", 0.5, "fifth"),      # a perfect fifth above, same mode
    ("A minor", "E minor", 0.5, "fifth"),
    ("C major", "A minor", 0.3, "relative"),
    ("A minor", "C major", 0.3, "relative"),
    ("C major", "C minor", 0.2, "parallel"),
    ("C major", "F major", 0.0, "other"),      # a fifth *below* is not MIREX's fifth
    ("C major", "D major", 0.0, "other"),
    ("Eb minor", "D# minor", 1.0, "exact"),    # enharmonic spellings are the same key
])
def test_mirex_key_score(ref: str, est: str, score: float, relation: str) -> None:
    assert mirex_key_score(ref, est) == score
    assert key_relation(ref, est) == relation


def test_key_label_spells_for_mir_eval() -> None:
    assert key_label("Cb", "major") == "B major" and key_label("D#", "minor") == "Eb minor"
    assert mirex_key_score(key_label("E#", "minor"), "F minor") == 1.0
    with pytest.raises(ValueError, match="'dorian'"):
        key_label("C", "dorian")
    with pytest.raises(ValueError):
        mirex_key_score("H major", "C major")  # mir_eval refuses what it cannot read


def test_tempo_accuracy_acc1_acc2() -> None:
    # Acc1: within 4 % of the reference; Acc2: also x2, x3, /2, /3 (4 % of that tempo).
    assert tempo_accuracy(120.0, 124.7) == (1.0, 1.0)
    assert tempo_accuracy(120.0, 125.5) == (0.0, 0.0)
    assert tempo_accuracy(120.0, 241.0) == (0.0, 1.0)   # double
    assert tempo_accuracy(120.0, 59.0) == (0.0, 1.0)    # half
    assert tempo_accuracy(60.0, 181.0) == (0.0, 1.0)    # triple
    assert tempo_accuracy(90.0, 30.5) == (0.0, 1.0)     # third
    assert tempo_accuracy(120.0, 180.0) == (0.0, 0.0)   # 3/2 is not forgiven
    assert tempo_accuracy([120, 120, 100, 80], [121, 240, 150, 40]) == (0.25, 0.75)
    with pytest.raises(ValueError, match="as many estimated tempi"):
        tempo_accuracy([120, 100], [120])
    assert tempo_relation(120, 180) == "three-halves" and tempo_relation(120, 100) == "other"
    assert tempo_relation(120, 241) == "double" and tempo_relation(120, 60.5) == "half"


def test_evaluate_mir_on_rendered_clicks(tmp_path: Path) -> None:
    from mullm.eval.mir_labels import evaluate_mir

    sr = 22050
    burst = np.random.default_rng(0).standard_normal(1500) * np.exp(-np.arange(1500) / 200)
    rows = []
    for i, bpm in enumerate((120.0, 100.0)):
        y = np.zeros(int(12 * sr), np.float32)  # hi-hat-like bursts on every beat
        for k in range(int(12 * bpm / 60)):
            n = int(k * 60 / bpm * sr)
            y[n:n + 1500] += (burst[: len(y) - n] * (0.5 if k % 4 == 0 else 0.3)).astype(
                np.float32)
        sf.write(tmp_path / f"c{i}.wav", y, sr)
        rows.append({"id": f"c{i}", "audio": f"c{i}.wav", "key": "C", "mode": "major",
                     "tempo_bpm": bpm})
    out = evaluate_mir(rows, tmp_path, profiles=("temperley",))
    assert out["n"] == 2 and out["tempo_acc1"] == out["tempo_acc2"] == 1.0, out["items"]
    assert sum(out["tempo_relations"].values()) == 2
    k = out["key"]["temperley"]
    assert sum(k["relations"].values()) == 2 and 0.0 <= k["mirex_weighted"] <= 1.0
    assert [it["key_true"] for it in out["items"]] == ["C major", "C major"]
