"""Instrument sets: which General MIDI programs a corpus may use, per role and family.

``"all"`` is the historical pool (``procedural._MELODY`` etc.). ``"train"`` and ``"heldout"``
split it so that a model can be checked on instruments it never heard: every GM family the
closed family question asks about keeps at least one program of its own on each side, and
no program is in both. A corpus for training uses ``"train"``; the held-out check renders
another seed with ``"heldout"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mullm.data import procedural as P

INSTRUMENT_SETS = ("all", "train", "heldout")

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
        return ProgramPools(tuple(P._MELODY), tuple(P._CHORDS), tuple(P._BASS),
                            {f: tuple(tuple(r) for r in roles)
                             for f, roles in P.SINGLE_FAMILY_PROGRAMS.items()},
                            frozenset(P._HIGH_BASS_FAMILIES))
    if instrument_set == "train":
        fams = {}
        for f, roles in P.SINGLE_FAMILY_PROGRAMS.items():
            kept = tuple(_without(r, _HELDOUT) for r in roles)
            if not all(kept):
                raise AssertionError(f"family {f!r} lost a whole role to the held-out set")
            fams[f] = kept
        return ProgramPools(_without(P._MELODY, _HELDOUT), _without(P._CHORDS, _HELDOUT),
                            _without(P._BASS, _HELDOUT), fams,
                            frozenset(P._HIGH_BASS_FAMILIES))
    if instrument_set == "heldout":
        melodic = tuple(sorted(_HELDOUT - set(HELDOUT_BASS)))
        # Every held-out family plays all three roles itself, the bass an octave up, so a
        # single-family clip never borrows a training instrument for its bass line.
        fams = {f: (tuple(ps), tuple(ps), tuple(ps)) for f, ps in HELDOUT_PROGRAMS.items()}
        return ProgramPools(melodic, melodic, tuple(HELDOUT_BASS), fams,
                            frozenset(HELDOUT_PROGRAMS))
    raise ValueError(f"instrument_set={instrument_set!r} is not one of {INSTRUMENT_SETS}")
