"""Instrument sets: which General MIDI programs a corpus may use, per role and family.

``"all"`` is the historical pool (``MELODY_PROGRAMS`` etc.). ``"train"`` and ``"heldout"``
split it so that a model can be checked on instruments it never heard: every GM family the
closed family question asks about keeps at least one program of its own on each side, and
no program is in both. A corpus for training uses ``"train"``; the held-out check renders
another seed with ``"heldout"``.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTRUMENT_SETS = ("all", "train", "heldout")

# Programs suitable per role; sound effects, unpitched percussion and odd timbres are left out
# so "which instrument plays" stays answerable by ear.
MELODY_PROGRAMS = [0, 1, 4, 5, 6, 11, 12, 13, 16, 19, 21, 22, 24, 25, 26, 27, 29, 40, 41, 48,
                   52, 56, 59, 60, 61, 64, 65, 66, 68, 71, 72, 73, 74, 75, 79, 80, 81, 82, 105,
                   110]
CHORD_PROGRAMS = [0, 1, 2, 4, 5, 6, 16, 17, 18, 19, 20, 21, 24, 25, 26, 27, 29, 30, 46, 48, 49,
                  50, 52, 53, 61, 62, 88, 89, 90, 91, 92, 94, 95]
BASS_PROGRAMS = [32, 33, 34, 35, 36, 38, 39, 42, 43, 58, 70]
# Per family (single-family clips): programs for melody / chords / bass, bass sounding an
# octave higher when the family has no true bass instrument.
SINGLE_FAMILY_PROGRAMS: dict[str, tuple[list[int], list[int], list[int]]] = {
    "piano": ([0, 1, 4, 5, 6], [0, 1, 2, 4, 5, 6], [0, 1, 2]),
    "chromatic percussion": ([11, 12, 13, 8, 9], [11, 12, 15], [12]),
    "organ": ([16, 17, 18, 19, 21, 22], [16, 17, 18, 19, 20, 21], [16, 19]),
    "guitar": ([24, 25, 26, 27, 29], [24, 25, 26, 27, 30], [24, 25, 27]),
    "strings": ([40, 41, 44], [40, 41, 42, 44, 45], [42, 43]),
    "ensemble": ([48, 52, 53], [48, 49, 52, 50], [48, 49]),
    "brass": ([56, 59, 60], [61, 60, 62], [57, 58]),
    "reed": ([64, 65, 68, 71], [65, 66, 69, 71], [67, 70]),
    "pipe": ([72, 73, 74, 75, 79], [73, 74, 75], [73, 74]),
    "synth lead": ([80, 81, 82, 84], [80, 81, 87], [81, 87]),
    "synth pad": ([88, 89, 91, 92], [88, 89, 90, 91, 94], [89, 90]),
}
HIGH_BASS_FAMILIES = {"chromatic percussion", "pipe", "synth pad", "ensemble"}

# Programs kept out of "train" (and the only ones "heldout" uses), at least one per family
# of the family question. Chosen among each family's everyday timbres, so the held-out
# check asks about real instruments (honky-tonk piano, music box, tenor sax), not effects.
HELDOUT_PROGRAMS: dict[str, list[int]] = {
    "piano": [3, 7],
    "chromatic percussion": [10, 14],
    "organ": [20, 23],
    "guitar": [28, 30],
    "strings": [45, 46],
    "ensemble": [51, 54],
    "brass": [61, 63],
    "reed": [66, 69],
    "pipe": [74, 77],
    "synth lead": [83, 85],
    "synth pad": [93, 95],
}
HELDOUT_BASS = [35, 37]  # fretless and slap bass 2: the bass line of multi-family clips
_HELDOUT = {p for ps in HELDOUT_PROGRAMS.values() for p in ps} | set(HELDOUT_BASS)


@dataclass(frozen=True)
class ProgramPools:
    """Programs per role for multi-family clips, and per family for single-family clips."""

    melody: tuple[int, ...]
    chords: tuple[int, ...]
    bass: tuple[int, ...]
    single_family: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    # families whose bass part sounds an octave higher (no true bass instrument among them)
    high_bass: frozenset[str]


def _without(pool: list[int], drop: set[int]) -> tuple[int, ...]:
    return tuple(p for p in pool if p not in drop)


def program_pools(instrument_set: str = "all") -> ProgramPools:
    """The program pools of ``instrument_set`` ("all", "train" or "heldout").

    Raises:
        ValueError: an unknown set name.
    """
    if instrument_set == "all":
        return ProgramPools(tuple(MELODY_PROGRAMS), tuple(CHORD_PROGRAMS), tuple(BASS_PROGRAMS),
                            {f: tuple(tuple(r) for r in roles)
                             for f, roles in SINGLE_FAMILY_PROGRAMS.items()},
                            frozenset(HIGH_BASS_FAMILIES))
    if instrument_set == "train":
        fams = {}
        for f, roles in SINGLE_FAMILY_PROGRAMS.items():
            kept = tuple(_without(r, _HELDOUT) for r in roles)
            if not all(kept):
                raise AssertionError(f"family {f!r} lost a whole role to the held-out set")
            fams[f] = kept
        return ProgramPools(_without(MELODY_PROGRAMS, _HELDOUT), _without(CHORD_PROGRAMS, _HELDOUT),
                            _without(BASS_PROGRAMS, _HELDOUT), fams,
                            frozenset(HIGH_BASS_FAMILIES))
    if instrument_set == "heldout":
        melodic = tuple(sorted(_HELDOUT - set(HELDOUT_BASS)))
        # Every held-out family plays all three roles itself, the bass an octave up, so a
        # single-family clip never borrows a training instrument for its bass line.
        fams = {f: (tuple(ps), tuple(ps), tuple(ps)) for f, ps in HELDOUT_PROGRAMS.items()}
        return ProgramPools(melodic, melodic, tuple(HELDOUT_BASS), fams,
                            frozenset(HELDOUT_PROGRAMS))
    raise ValueError(f"instrument_set={instrument_set!r} is not one of {INSTRUMENT_SETS}")
