"""Procedurally composed pieces whose labels are exact by construction.

A piece is a list of :class:`Note` events in quarter-note time plus a General MIDI program per
channel. The generator picks a style (tempo range, metres, patterns), a key and mode, a chord
progression that cadences on the tonic (minor keys always use the major dominant so the mode
is unambiguous), and writes bass, chords, melody and (for some styles) drums on GM channel 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mullm.data.instruments import program_pools
from mullm.utils.music import MODES, PITCH_NAMES, tempo_class

GM_PROGRAMS = [
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
]
GM_FAMILIES = [
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive",
    "sound effects",
]
DRUM_KIT = "Drum Kit"
DRUM_FAMILY = "drums"
DRUM_CHANNEL = 9  # GM channel 10, zero-based



def gm_family(program: int) -> str:
    """General MIDI family name of a program number 0-127."""
    if not 0 <= program < 128:
        raise ValueError(f"GM program must be 0-127, got {program}")
    return GM_FAMILIES[program // 8]


@dataclass(frozen=True)
class Metre:
    """A time signature: beats per bar, beat length in quarter notes and metre class."""

    name: str
    beats: int
    beat_ql: float
    metre: str

    @property
    def bar_ql(self) -> float:
        """Bar length in quarter notes."""
        return self.beats * self.beat_ql


# tempo_bpm counts the felt beat: the quarter in x/4, the dotted quarter in 6/8 and 9/8.
METRES = {
    "2/4": Metre("2/4", 2, 1.0, "duple"),
    "3/4": Metre("3/4", 3, 1.0, "triple"),
    "4/4": Metre("4/4", 4, 1.0, "duple"),
    "6/8": Metre("6/8", 2, 1.5, "duple"),
    "9/8": Metre("9/8", 3, 1.5, "triple"),
    "5/4": Metre("5/4", 5, 1.0, "other"),
}


@dataclass(frozen=True)
class Note:
    """One note: start and duration in quarter notes, MIDI pitch, velocity, channel."""

    start: float
    dur: float
    pitch: int
    velocity: int
    channel: int


@dataclass
class Arrangement:
    """Notes plus one GM program per pitched channel; ready to render."""

    notes: list[Note]
    programs: dict[int, int]
    tempo_bpm: float
    metre: Metre
    length_ql: float
    drums: bool = False
    labels: dict = field(default_factory=dict)

    @property
    def seconds_per_quarter(self) -> float:
        """Seconds per quarter note at this tempo (the beat may be a dotted quarter)."""
        return 60.0 / (self.tempo_bpm * self.metre.beat_ql)

    def instruments(self) -> list[str]:
        """Sorted GM names of the instruments that play (drum kit included)."""
        names = {GM_PROGRAMS[p] for p in self.programs.values()}
        if self.drums:
            names.add(DRUM_KIT)
        return sorted(names)

    def families(self) -> list[str]:
        """Sorted GM family names present ("drums" for the kit)."""
        fams = {gm_family(p) for p in self.programs.values()}
        if self.drums:
            fams.add(DRUM_FAMILY)
        return sorted(fams)


@dataclass(frozen=True)
class Style:
    """Generator settings for one style."""

    name: str
    metres: tuple[str, ...]
    tempo: tuple[int, int]
    drums: float  # probability of a drum part in a multi-family clip
    bass: str
    comp: str
    drum_pattern: str
    melody_rhythm: str


STYLES = {
    s.name: s
    for s in [
        Style("rock groove", ("4/4",), (96, 152), 1.0, "eighths", "beats", "rock", "mixed"),
        Style("waltz", ("3/4",), (84, 180), 0.3, "downbeat", "oom-pah", "waltz", "mixed"),
        Style("ballad", ("4/4", "6/8"), (52, 78), 0.5, "whole", "arpeggio", "ballad", "slow"),
        Style("march", ("2/4", "4/4"), (100, 128), 0.9, "root-fifth", "offbeat", "march",
              "mixed"),
        Style("bossa", ("4/4",), (120, 150), 1.0, "bossa", "bossa", "bossa", "syncopated"),
        Style("jig", ("6/8",), (96, 130), 0.6, "root-fifth", "beats", "compound", "running"),
        Style("slip jig", ("9/8",), (90, 125), 0.5, "downbeat", "beats", "compound", "running"),
        Style("hymn", ("4/4", "3/4"), (56, 88), 0.0, "whole", "block", "none", "slow"),
        Style("five-four groove", ("5/4",), (90, 160), 1.0, "five", "beats", "five", "mixed"),
        Style("shuffle", ("4/4",), (80, 120), 1.0, "eighths", "beats", "rock", "syncopated"),
    ]
}

# (root offset from tonic in semitones, chord quality)
_MAJOR_PROGRESSIONS = [
    [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],
    [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")],
    [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj"), (0, "maj"), (5, "maj"), (7, "dom7"),
     (0, "maj")],
    [(2, "min"), (7, "dom7"), (0, "maj"), (0, "maj")],
    [(0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")],
    [(0, "maj"), (4, "min"), (5, "maj"), (7, "dom7")],
]
_MINOR_PROGRESSIONS = [
    [(0, "min"), (5, "min"), (7, "maj"), (0, "min")],
    [(0, "min"), (8, "maj"), (5, "min"), (7, "maj")],
    [(0, "min"), (10, "maj"), (8, "maj"), (7, "maj")],
    [(0, "min"), (2, "dim"), (7, "dom7"), (0, "min")],
    [(0, "min"), (5, "min"), (0, "min"), (7, "dom7")],
    [(0, "min"), (8, "maj"), (3, "maj"), (7, "maj")],
]
_QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "dom7": (0, 4, 7, 10)}
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)


def _nearest(pitches: list[int], target: float) -> int:
    return min(pitches, key=lambda p: (abs(p - target), p))


def _chord_pcs(tonic: int, chord: tuple[int, str]) -> list[int]:
    root = (tonic + chord[0]) % 12
    return [(root + i) % 12 for i in _QUALITY[chord[1]]]


def _in_range(pcs: list[int], lo: int, hi: int) -> list[int]:
    return [p for p in range(lo, hi + 1) if p % 12 in pcs]


def _bass_notes(style: Style, metre: Metre, bar: float, root: int, fifth: int,
                ch: int, vel: int) -> list[Note]:
    b, q = metre.beat_ql, metre.bar_ql
    kind = style.bass
    if kind == "eighths":
        return [Note(bar + i * 0.5, 0.45, root, vel, ch) for i in range(int(q / 0.5))]
    if kind == "downbeat":
        return [Note(bar, b * 0.95, root, vel, ch)]
    if kind == "whole":
        return [Note(bar, q * 0.98, root, vel, ch)]
    if kind == "root-fifth":
        return [Note(bar + i * b, b * 0.9, root if i % 2 == 0 else fifth, vel, ch)
                for i in range(metre.beats)]
    if kind == "bossa":
        out = []
        for half in range(int(q // 2)):
            t = bar + 2 * half
            out += [Note(t, 1.4, root, vel, ch), Note(t + 1.5, 0.45, fifth, vel, ch)]
        return out
    if kind == "five":
        return [Note(bar, 1.4, root, vel, ch), Note(bar + 1.5, 0.45, root, vel, ch),
                Note(bar + 3, 0.9, fifth, vel, ch), Note(bar + 4, 0.9, root, vel, ch)]
    raise ValueError(f"unknown bass pattern {kind!r}")


def _comp_notes(style: Style, metre: Metre, bar: float, chord: list[int], ch: int, vel: int,
                arp_order: list[int]) -> list[Note]:
    b, q = metre.beat_ql, metre.bar_ql
    kind = style.comp
    block = lambda t, d, v=vel: [Note(t, d, p, v, ch) for p in chord]  # noqa: E731
    if kind == "block":
        return block(bar, q * 0.97)
    if kind == "beats":
        return [n for i in range(metre.beats) for n in block(bar + i * b, b * 0.8,
                                                             vel if i == 0 else vel - 10)]
    if kind == "oom-pah":
        return [n for i in (1, 2) for n in block(bar + i * b, b * 0.6)]
    if kind == "offbeat":
        return [n for i in range(metre.beats) for n in block(bar + i * b + b / 2, b * 0.4)]
    if kind == "arpeggio":
        step = 0.5
        seq = [chord[i % len(chord)] for i in arp_order]
        return [Note(bar + i * step, step * 1.8, seq[i % len(seq)], vel, ch)
                for i in range(int(q / step))]
    if kind == "bossa":
        hits = [0.0, 1.5, 3.0] if q >= 4 else [0.0, 1.5]
        return [n for h in hits for n in block(bar + h, 0.9)]
    raise ValueError(f"unknown comp pattern {kind!r}")


_KICK, _SNARE, _HAT, _OPEN_HAT, _RIDE, _CRASH, _STICK = 36, 38, 42, 46, 51, 49, 37


def _drum_notes(pattern: str, metre: Metre, bar: float, first: bool) -> list[Note]:
    b, q = metre.beat_ql, metre.bar_ql
    hits: list[tuple[float, int, int]] = []
    if pattern == "rock":
        hits += [(i * 0.5, _HAT, 70) for i in range(int(q / 0.5))]
        hits += [(0, _KICK, 100), (2, _KICK, 95), (2.5, _KICK, 80), (1, _SNARE, 100),
                 (3, _SNARE, 100)]
    elif pattern == "waltz":
        hits += [(0, _KICK, 95), (1, _HAT, 70), (2, _HAT, 70)]
    elif pattern == "ballad":
        hits += [(i * b, _RIDE, 55) for i in range(metre.beats)]
        hits += [(0, _KICK, 80), (q / 2, _STICK, 70)]
    elif pattern == "march":
        hits += [(i * b, _KICK if i % 2 == 0 else _SNARE, 95) for i in range(metre.beats)]
        hits += [(i * 0.25, _SNARE, 45) for i in range(int(q / 0.25)) if i % 4]
    elif pattern == "bossa":
        hits += [(i * 0.5, _HAT, 55) for i in range(int(q / 0.5))]
        hits += [(0, _KICK, 85), (1.5, _KICK, 70), (2, _KICK, 85), (3.5, _KICK, 70)]
        hits += [(t, _STICK, 80) for t in (0, 1.5, 3.0)]
    elif pattern == "compound":
        hits += [(i * 0.5, _HAT, 60) for i in range(int(q / 0.5))]
        hits += [(i * b, _KICK if i % 2 == 0 else _SNARE, 95) for i in range(metre.beats)]
    elif pattern == "five":
        hits += [(i * 0.5, _HAT, 65) for i in range(int(q / 0.5))]
        hits += [(0, _KICK, 100), (1.5, _KICK, 80), (3, _KICK, 95), (2, _SNARE, 100),
                 (4, _SNARE, 100)]
    elif pattern != "none":
        raise ValueError(f"unknown drum pattern {pattern!r}")
    if first:
        hits.append((0, _CRASH, 90))
    return [Note(bar + t, 0.2, p, v, DRUM_CHANNEL) for t, p, v in hits if t < q]


_RHYTHMS = {
    # candidate note lengths (quarters) per melody style
    "mixed": [0.5, 0.5, 1.0, 1.0, 1.5, 2.0],
    "slow": [1.0, 1.0, 2.0, 1.5, 3.0],
    "syncopated": [0.5, 1.0, 1.5, 0.5],
    "running": [0.5, 0.5, 0.5, 1.0, 1.5],
}


def _melody(rng: np.random.Generator, style: Style, metre: Metre, bars: list[float],
            chords: list[list[int]], scale: list[int], tonic: int, ch: int, vel: int,
            lo: int, hi: int) -> list[Note]:
    notes: list[Note] = []
    current = float((lo + hi) / 2)
    scale_pitches = _in_range(scale, lo, hi)
    for bi, (bar, chord) in enumerate(zip(bars, chords)):
        last_bar = bi == len(bars) - 1
        chord_pitches = _in_range(chord, lo, hi)
        t = 0.0
        while t < metre.bar_ql - 1e-9:
            if last_bar:
                # cadence: hold the tonic for the whole final bar
                p = _nearest(_in_range([tonic], lo, hi), current)
                notes.append(Note(bar, metre.bar_ql * 0.98, p, vel, ch))
                break
            dur = float(rng.choice(_RHYTHMS[style.melody_rhythm]))
            dur = min(dur, metre.bar_ql - t)
            strong = abs((t / metre.beat_ql) - round(t / metre.beat_ql)) < 1e-9
            if rng.random() < 0.12 and t > 0:
                t += dur  # a rest
                continue
            pool = chord_pitches if strong else scale_pitches
            target = current + rng.normal(0, 2.5)
            p = _nearest(pool, target)
            notes.append(Note(bar + t, dur * 0.92, p, vel + int(rng.integers(-8, 8)), ch))
            current = 0.7 * p + 0.3 * (lo + hi) / 2
            t += dur
    return notes


def choose_programs(rng: np.random.Generator, single_family: str | None,
                    instrument_set: str = "all") -> tuple[int, int, int, bool]:
    """(melody, chords, bass) GM programs and whether the bass sounds an octave higher,
    drawn from ``instrument_set`` (``mullm.data.instruments``: "all", "train", "heldout")."""
    pools = program_pools(instrument_set)
    if single_family is not None:
        mel, chd, bas = pools.single_family[single_family]
        return (int(rng.choice(mel)), int(rng.choice(chd)), int(rng.choice(bas)),
                single_family in pools.high_bass)
    return (int(rng.choice(pools.melody)), int(rng.choice(pools.chords)),
            int(rng.choice(pools.bass)), False)


def compose(rng: np.random.Generator, *, style: str, tonic: int, mode: str, tempo_bpm: float,
            metre: str, n_bars: int, single_family: str | None = None,
            instrument_set: str = "all") -> Arrangement:
    """Compose one piece; every label in ``labels`` is true of the notes by construction."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    st = STYLES[style]
    m = METRES[metre]
    if n_bars < 2:
        raise ValueError(f"need at least 2 bars, got {n_bars}")
    progs = _MAJOR_PROGRESSIONS if mode == "major" else _MINOR_PROGRESSIONS
    prog = progs[int(rng.integers(len(progs)))]
    # chord sequence: repeat the progression, end on a V -> i/I cadence
    seq = [prog[i % len(prog)] for i in range(n_bars - 2)]
    seq += [(7, "dom7"), (0, "maj" if mode == "major" else "min")]
    scale = [(tonic + s) % 12 for s in (_MAJOR_SCALE if mode == "major" else _HARMONIC_MINOR)]
    chords = [_chord_pcs(tonic, c) for c in seq]
    bars = [i * m.bar_ql for i in range(n_bars)]

    mel_p, chd_p, bas_p, high_bass = choose_programs(rng, single_family, instrument_set)
    drums = single_family is None and rng.random() < st.drums and st.drum_pattern != "none"
    vel = lambda: int(rng.integers(70, 105))  # noqa: E731
    v_mel, v_chd, v_bas = vel(), vel() - 12, vel()
    notes: list[Note] = []
    arp = list(rng.permutation(4))
    bass_lo = 40 if high_bass else 28
    for bar, c, pcs in zip(bars, seq, chords):
        root = _nearest(_in_range([pcs[0]], bass_lo, bass_lo + 11), bass_lo + 6)
        fifth = root + 7 if c[1] != "dim" else root + 6
        notes += _bass_notes(st, m, bar, root, fifth, 1, v_bas)
        voicing = sorted(_nearest(_in_range([pc], 52, 67), 60) for pc in pcs)
        notes += _comp_notes(st, m, bar, voicing, 2, v_chd, arp)
        if drums:
            notes += _drum_notes(st.drum_pattern, m, bar, bar == 0)
    notes += _melody(rng, st, m, bars, chords, scale, tonic, 0, v_mel, 67, 86)
    if drums:
        # a final crash on the downbeat after the last bar rounds the ending off
        notes.append(Note(n_bars * m.bar_ql, 0.2, _CRASH, 90, DRUM_CHANNEL))
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    arr = Arrangement(notes=notes, programs={0: mel_p, 1: bas_p, 2: chd_p},
                      tempo_bpm=float(tempo_bpm), metre=m, length_ql=n_bars * m.bar_ql,
                      drums=bool(drums))
    arr.labels = {
        "key": PITCH_NAMES[tonic % 12], "mode": mode, "tempo_bpm": float(tempo_bpm),
        "tempo_class": tempo_class(tempo_bpm), "time_signature": metre, "metre": m.metre,
        "style": style, "progression": [list(c) for c in seq],
    }
    return arr


def bars_for_duration(metre: str, tempo_bpm: float, seconds: float) -> int:
    """Whole bars that fit in ``seconds`` at this tempo (at least 2)."""
    m = METRES[metre]
    bar_s = m.bar_ql * 60.0 / (tempo_bpm * m.beat_ql)
    return max(2, int(math.floor(seconds / bar_s)))
