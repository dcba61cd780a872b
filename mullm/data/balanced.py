"""Balanced procedural plans: every answer of every closed question equally often.

A plain plan draws a style first, and the style fixes the metre and a tempo range, so tempo
classes, metres and (with few single-family clips) instrument families come out skewed, and
a model can learn the prior instead of the music. A balanced plan draws the answers first,
each from a cycle of seeded permutations (so any run of ``k * len(values)`` clips holds each
value ``k`` times), then picks a style that can play them:

* key: the 24 (tonic, mode) pairs;
* tempo class: slow / moderate / fast, the tempo drawn inside the class;
* metre: duple / triple (5/4 has no answer to the metre question, so it is left out);
* family: single-family clips cycle through the 11 families of the family question.

A style's own tempo range is widened by ``STYLE_TEMPO_STRETCH`` so that tempo class is not
read off the style alone (a waltz can be slow, a hymn moderate). The held-out instrument set
also moves every tempo by half a beat per minute, so no held-out clip shares a training BPM.
"""

from __future__ import annotations

import numpy as np

from mullm.data import procedural as P
from mullm.data.instruments import SINGLE_FAMILY_PROGRAMS

KEYS = [(t, m) for m in ("major", "minor") for t in range(12)]
TEMPO_CLASS_RANGES = {"slow": (50, 79), "moderate": (80, 129), "fast": (130, 180)}
METRE_CLASSES = ("duple", "triple")
STYLE_TEMPO_STRETCH = 0.25


class Cycle:
    """Values in seeded random order, a fresh permutation each pass (draws from ``rng``)."""

    def __init__(self, values: list, rng: np.random.Generator) -> None:
        self.values = list(values)
        self.rng = rng
        self.order: list[int] = []

    def next(self) -> object:
        """The next value; every pass over ``values`` uses each one exactly once."""
        if not self.order:
            self.order = [int(i) for i in self.rng.permutation(len(self.values))]
        return self.values[self.order.pop(0)]


def style_options(tempo_class: str, metre_class: str) -> list[tuple[str, list[str], int, int]]:
    """(style, its metres of ``metre_class``, lowest BPM, highest BPM) for every style that can
    play ``tempo_class`` in ``metre_class`` (its tempo range widened by the stretch)."""
    lo_c, hi_c = TEMPO_CLASS_RANGES[tempo_class]
    out = []
    for name in sorted(P.STYLES):
        st = P.STYLES[name]
        metres = [m for m in st.metres if P.METRES[m].metre == metre_class]
        lo = max(lo_c, int(np.floor(st.tempo[0] * (1 - STYLE_TEMPO_STRETCH))))
        hi = min(hi_c, int(np.ceil(st.tempo[1] * (1 + STYLE_TEMPO_STRETCH))))
        if metres and lo <= hi:
            out.append((name, metres, lo, hi))
    if not out:
        raise AssertionError(f"no style plays {tempo_class} {metre_class} music")
    return out


class BalancedDraw:
    """Draws the procedural part of balanced clip specs, one clip at a time, in plan order
    (so a plan of ``n`` clips is the first ``n`` of any longer plan with the same seed)."""

    def __init__(self, rng: np.random.Generator, instrument_set: str = "train") -> None:
        self.rng = rng
        self.instrument_set = instrument_set
        self.keys = Cycle(KEYS, rng)
        self.tempi = Cycle(list(TEMPO_CLASS_RANGES), rng)
        self.metres = Cycle(list(METRE_CLASSES), rng)
        self.families = Cycle(sorted(SINGLE_FAMILY_PROGRAMS), rng)

    def spec(self, single: bool) -> dict:
        """style, metre, tempo_bpm, tonic, mode, single_family and instrument_set."""
        tonic, mode = self.keys.next()
        tempo_class, metre_class = self.tempi.next(), self.metres.next()
        options = style_options(tempo_class, metre_class)
        style, metres, lo, hi = options[int(self.rng.integers(len(options)))]
        tempo: float = int(self.rng.integers(lo, hi + 1))
        if self.instrument_set == "heldout":
            tempo += 0.5  # still inside the class: every class range ends on a whole number
        return {"style": style, "metre": metres[int(self.rng.integers(len(metres)))],
                "tempo_bpm": tempo, "tonic": int(tonic), "mode": mode,
                "single_family": self.families.next() if single else None,
                "instrument_set": self.instrument_set}
