"""MIR metrics on mir_eval: the MIREX key score and the tempo accuracies Acc1 / Acc2.

* Key: ``mir_eval.key.weighted_score`` (MIREX 2005): 1 for the same key, 0.5 for the
  estimate a perfect fifth *above* the reference in the same mode, 0.3 for the relative
  major/minor, 0.2 for the parallel one, else 0. Keys are strings such as ``"Eb minor"``;
  ``key_label`` builds one from any spelling mullm reads (``"D#"``, ``"Cb"`` ...).
* Tempo: ``mir_eval.tempo.detection``'s relative tolerance (``|est - ref| <= tol * ref``)
  per candidate. Acc1 (Gouyon et al. 2006): within 4 % of the reference; Acc2: within 4 % of
  the reference times 1, 2, 3, 1/2 or 1/3 (octave and triple-metre errors forgiven).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# mir_eval's weighted_score value for each MIREX key relation.
KEY_RELATIONS = {1.0: "exact", 0.5: "fifth", 0.3: "relative", 0.2: "parallel", 0.0: "other"}
ACC2_FACTORS = (1.0, 2.0, 3.0, 1 / 2, 1 / 3)
# Named tempo relations for reports, checked in this order.
TEMPO_RELATIONS = (("exact", 1.0), ("double", 2.0), ("half", 0.5), ("triple", 3.0),
                   ("third", 1 / 3), ("three-halves", 1.5), ("two-thirds", 2 / 3))


def key_label(tonic: str, mode: str) -> str:
    """``"<tonic> <mode>"`` in mir_eval's spelling from any tonic mullm reads (enharmonics
    included: ``key_label("Cb", "major") == "B major"``).

    Raises:
        ValueError: an unknown tonic, or a mode other than "major" / "minor".
    """
    from mullm.utils.music import PITCH_NAMES, pitch_class

    if mode not in ("major", "minor"):
        raise ValueError(f"mode={mode!r} must be 'major' or 'minor'")
    return f"{PITCH_NAMES[pitch_class(tonic)]} {mode}"


def mirex_key_score(ref: str, est: str) -> float:
    """MIREX weighted key score of estimate ``est`` against reference ``ref`` (both like
    ``"C major"``): 1, 0.5, 0.3, 0.2 or 0 (see the module docstring).

    Raises:
        ValueError: a key string mir_eval does not read.
    """
    import mir_eval.key

    return float(mir_eval.key.weighted_score(ref, est))


def key_relation(ref: str, est: str) -> str:
    """The MIREX relation of ``est`` to ``ref``: "exact", "fifth", "relative", "parallel" or
    "other" (the category behind ``mirex_key_score``)."""
    return KEY_RELATIONS[mirex_key_score(ref, est)]


def _within(ref_bpm: float, est_bpm: float, factor: float, tol: float) -> bool:
    """mir_eval's tempo hit: ``|est - ref * factor| <= tol * ref * factor``."""
    import mir_eval.tempo

    ref = np.array([ref_bpm * factor] * 2, dtype=float)
    est = np.array([est_bpm] * 2, dtype=float)
    return bool(mir_eval.tempo.detection(ref, 1.0, est, tol=tol)[1])


def tempo_relation(ref_bpm: float, est_bpm: float, tol: float = 0.04) -> str:
    """How ``est_bpm`` relates to ``ref_bpm`` within ``tol``: "exact", "double", "half",
    "triple", "third", "three-halves", "two-thirds" or "other".

    Raises:
        ValueError: a reference tempo <= 0 or a negative estimate (mir_eval's check).
    """
    for name, factor in TEMPO_RELATIONS:
        if _within(ref_bpm, est_bpm, factor, tol):
            return name
    return "other"


def tempo_accuracy(ref_bpm: float | Sequence[float], est_bpm: float | Sequence[float],
                   tol: float = 0.04) -> tuple[float, float]:
    """(Acc1, Acc2) over paired reference and estimated tempi in BPM (one pair or equal-
    length sequences): the fraction within ``tol`` of the reference, and within ``tol`` of
    the reference times 1, 2, 3, 1/2 or 1/3.

    Raises:
        ValueError: the sequences differ in length or are empty, or a tempo is invalid.
    """
    refs = np.atleast_1d(np.asarray(ref_bpm, dtype=float))
    ests = np.atleast_1d(np.asarray(est_bpm, dtype=float))
    if refs.shape != ests.shape or refs.size == 0:
        raise ValueError(f"need as many estimated tempi as reference tempi (at least one), "
                         f"got {ests.size} and {refs.size}")
    acc1 = [_within(r, e, 1.0, tol) for r, e in zip(refs, ests)]
    acc2 = [any(_within(r, e, f, tol) for f in ACC2_FACTORS) for r, e in zip(refs, ests)]
    return float(np.mean(acc1)), float(np.mean(acc2))


__all__ = ["ACC2_FACTORS", "KEY_RELATIONS", "TEMPO_RELATIONS", "key_label", "key_relation",
           "mirex_key_score", "tempo_accuracy", "tempo_relation"]
