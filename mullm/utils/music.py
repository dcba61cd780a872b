"""Music constants shared by audio synthesis, data generation, MIR labels and encoders.

Spellings follow docs/INTERFACES.md: keys are written C C# D Eb E F F# G Ab A Bb B, and
readers accept enharmonic spellings.
"""

from __future__ import annotations

import math

PITCH_NAMES: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb",
                                "B")
# Every spelling a reader accepts -> pitch class (0 = C).
_SPELLINGS: dict[str, int] = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5,
    "F": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
    "Cb": 11,
}

MODES: tuple[str, ...] = ("major", "minor")

# Key profiles, C first, for Krumhansl-Schmuckler key finding.
# Krumhansl & Kessler (1982) probe-tone ratings.
KRUMHANSL: dict[str, list[float]] = {
    "major": [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
    "minor": [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
}
# Temperley (1999), "What's key for key?".
TEMPERLEY: dict[str, list[float]] = {
    "major": [5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0],
    "minor": [5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0],
}
KEY_PROFILES: dict[str, dict[str, list[float]]] = {"krumhansl": KRUMHANSL,
                                                   "temperley": TEMPERLEY}

# Tempo classes with their [low, high) bounds in BPM (INTERFACES.md: slow < 80 <= moderate
# < 130 <= fast).
TEMPO_CLASS_BPM: dict[str, tuple[float, float]] = {
    "slow": (0.0, 80.0),
    "moderate": (80.0, 130.0),
    "fast": (130.0, math.inf),
}
TEMPO_CLASSES: tuple[str, ...] = tuple(TEMPO_CLASS_BPM)

# Metre classes: 6/8 counts as duple, 9/8 as triple, 5/4 as other.
METRE_CLASSES: tuple[str, ...] = ("duple", "triple", "other")


def pitch_class(name: str) -> int:
    """Pitch class 0-11 of a key name such as "C", "F#", "Bb" or "db" (enharmonics and a
    lower-case letter accepted).

    Raises:
        ValueError: not a pitch name, naming the accepted spellings.
    """
    key = name.strip()
    key = key[:1].upper() + key[1:]
    try:
        return _SPELLINGS[key]
    except KeyError:
        raise ValueError(f"unknown key {name!r}; expected one of {list(PITCH_NAMES)} "
                         "(or an enharmonic spelling such as Db)") from None


def tempo_class(bpm: float) -> str:
    """"slow", "moderate" or "fast" for a tempo in BPM (bounds in ``TEMPO_CLASS_BPM``)."""
    for name, (_, high) in TEMPO_CLASS_BPM.items():
        if bpm < high:
            return name
    return TEMPO_CLASSES[-1]  # only for NaN, which compares false with every bound
