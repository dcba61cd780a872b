"""Captions scored by the attribute words they state (mullm.eval.captions)."""

from __future__ import annotations

import itertools

import pytest

from mullm.data.templates import (
    FAMILY_CHOICES,
    METRE_CHOICES,
    TEMPO_CHOICES,
    attribute_caption,
)
from mullm.eval.captions import caption_attributes, score_captions
from mullm.utils.music import PITCH_NAMES


def _rows() -> list[dict]:
    """Every family, key, mode, tempo class and metre at least once; drums on some."""
    rows = []
    combos = itertools.product(PITCH_NAMES, ("major", "minor"), TEMPO_CHOICES,
                               METRE_CHOICES + ["other"])
    for i, (tonic, mode, tempo, metre) in enumerate(itertools.islice(combos, 0, None, 5)):
        fam = FAMILY_CHOICES[i % len(FAMILY_CHOICES)]
        fams = [fam] if i % 3 else [fam, FAMILY_CHOICES[(i + 1) % len(FAMILY_CHOICES)]]
        rows.append({"id": f"c{i}", "key": tonic, "mode": mode, "tempo_class": tempo,
                     "metre": metre, "families": fams + (["drums"] if i % 4 == 0 else [])})
    return rows


def test_the_training_captions_read_back_to_their_labels() -> None:
    # The quickstart trains on attribute_caption; a model that learned it perfectly must
    # score 1.0 on every attribute, so the reader and the writer agree on every value.
    rows = _rows()
    scores = score_captions([attribute_caption(r) for r in rows], rows)
    assert set(scores) == {"family", "mode", "tempo_class", "metre", "key", "all"}
    assert all(e["accuracy"] == 1.0 for e in scores.values()), scores
    assert scores["family"]["n"] == sum(1 for r in rows if len(
        [f for f in r["families"] if f != "drums"]) == 1 and "drums" not in r["families"])


def test_what_a_caption_states() -> None:
    said = caption_attributes("A fast triple-metre piece in G minor, played by synth lead and "
                              "strings with drums.")
    assert said == {"key": "G minor", "mode": "minor", "tempo_class": "fast",
                    "metre": "triple", "families": ["strings", "synth lead"]}
    # two different keys, or two tempo words, state neither
    said = caption_attributes("Slow or fast, in C major then A minor.")
    assert "key" not in said and "mode" not in said and "tempo_class" not in said
    assert caption_attributes("A calm minor piece.")["mode"] == "minor"


def test_a_caption_that_says_nothing_or_the_wrong_value_scores_zero() -> None:
    rows = _rows()[:6]
    silent = score_captions(["Some music."] * len(rows), rows)
    assert all(e["accuracy"] == 0.0 for e in silent.values())
    flipped = [attribute_caption({**r, "mode": "minor" if r["mode"] == "major" else "major"})
               for r in rows]
    scores = score_captions(flipped, rows)
    assert scores["mode"]["accuracy"] == 0.0 and scores["key"]["accuracy"] == 0.0
    assert scores["tempo_class"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="2 captions for 6 clips"):
        score_captions(["a", "b"], rows)
