"""Scores from music21's corpus with key labels we can defend, and their conversion to notes.

Keys are never guessed. A score is kept only when its notation states the key and the music
confirms it:

* Bach chorales: one key signature throughout; the final chord's bass is the tonic of the
  signature's major key (and that chord has a major third) or of its relative minor (and the
  raised leading tone occurs, so it is harmonic minor, not a church mode); music21's
  Krumhansl analysis must name the same key or its relative (a cross-check only; the label
  comes from the notation). Modal chorales (Phrygian endings, Dorian signatures) fail these
  tests and are left out.
* Folk tunes (Essen collection, ABC): the ``K:`` field names a major or minor key, the tune
  ends on that tonic, the mode's third occurs, and the same analysis cross-check holds.

``scan_music21`` runs these checks; its result for the installed music21 is stored in
``mullm/data/music21_catalog.json`` (package data, read by ``load_catalog``) so building a
corpus does not parse 3,000 scores; ``python -m mullm.data.scores`` regenerates it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mullm.data.procedural import METRES
from mullm.errors import DataError
from mullm.utils.atomic import atomic_write_text

CATALOG_FILE = "music21_catalog.json"
CATALOG_FIELDS = ("path", "number", "collection", "tonic", "mode", "time_signature",
                  "length_ql", "parts")

# Essen collections scanned for folk tunes: German songs, notated with explicit K: keys.
ESSEN_FILES = ("altdeu10", "altdeu20", "erk5", "erk10", "erk20", "kinder0", "boehme10",
               "boehme20", "fink0", "dva0")
MAX_SCORE_QL = 400.0


@dataclass(frozen=True)
class ScoreEntry:
    """One usable score: corpus path (and opus number), key, mode and metre from notation."""

    path: str
    number: int | None
    collection: str
    tonic: int
    mode: str
    time_signature: str
    length_ql: float
    parts: int


def _single(values: list) -> object | None:
    return values[0] if values and all(v == values[0] for v in values) else None


def check_chorale(score) -> tuple[int, str] | None:  # noqa: ANN001 - music21 Score
    """(tonic pitch class, mode) of a chorale when the notation states it clearly, else None."""
    from music21 import key as m21key

    sigs = [k.sharps for k in score.recurse().getElementsByClass(m21key.KeySignature)]
    sharps = _single(sigs)
    if sharps is None:
        return None
    major_tonic = (7 * sharps) % 12
    minor_tonic = (major_tonic + 9) % 12
    chords = score.chordify().recurse().getElementsByClass("Chord")
    if not chords:
        return None
    final = chords[-1]
    bass = final.bass().pitchClass
    pcs = {p.pitchClass for p in final.pitches}
    all_pcs = [p.pitchClass for n in score.recurse().notes for p in n.pitches]
    if bass == major_tonic and (major_tonic + 4) % 12 in pcs and (major_tonic + 3) % 12 not in pcs:
        tonic, mode = major_tonic, "major"
    elif bass == minor_tonic and all_pcs.count((minor_tonic + 11) % 12) >= 2:
        tonic, mode = minor_tonic, "minor"
    else:
        return None
    if not _analysis_agrees(score, tonic, mode):
        return None
    return tonic, mode


def check_folk(score) -> tuple[int, str] | None:  # noqa: ANN001 - music21 Score
    """(tonic pitch class, mode) of an ABC folk tune whose K: key is confirmed, else None."""
    from music21 import key as m21key

    keys = list(score.recurse().getElementsByClass(m21key.Key))
    k = _single([(x.tonic.pitchClass, x.mode) for x in keys])
    if k is None or k[1] not in ("major", "minor"):
        return None
    tonic, mode = k
    notes = list(score.recurse().notes)
    if len(notes) < 16 or notes[-1].pitches[-1].pitchClass != tonic:
        return None
    pcs = [p.pitchClass for n in notes for p in n.pitches]
    third = (tonic + (4 if mode == "major" else 3)) % 12
    wrong_third = (tonic + (3 if mode == "major" else 4)) % 12
    if pcs.count(third) < 2 or pcs.count(wrong_third) > pcs.count(third) / 4:
        return None
    if not _analysis_agrees(score, tonic, mode):
        return None
    return tonic, mode


def _analysis_agrees(score, tonic: int, mode: str) -> bool:  # noqa: ANN001
    est = score.analyze("key")
    et, em = est.tonic.pitchClass, est.mode
    if (et, em) == (tonic, mode):
        return True
    relative = ((tonic + 9) % 12, "minor") if mode == "major" else ((tonic + 3) % 12, "major")
    return (et, em) == relative


def _metre_of(score) -> tuple[str, float] | None:  # noqa: ANN001
    ts = _single([t.ratioString for t in score.recurse().getElementsByClass("TimeSignature")])
    if ts is None or ts not in METRES:
        return None
    length = float(score.highestTime)
    if length <= 0 or length > MAX_SCORE_QL:
        return None
    return ts, length


def scan_bach() -> list[ScoreEntry]:
    """Every Bach chorale in music21's corpus that passes :func:`check_chorale`."""
    from music21 import corpus

    out = []
    for p in sorted(corpus.getComposer("bach"), key=str):
        rel = f"bach/{p.stem}"
        try:
            s = corpus.parse(rel)
        except Exception:  # noqa: BLE001 - a score music21 cannot parse is simply not listed
            continue
        if len(s.parts) != 4:
            continue
        m = _metre_of(s)
        k = check_chorale(s) if m else None
        if m and k:
            out.append(ScoreEntry(rel, None, "chorale", k[0], k[1], m[0], m[1], 4))
    return out


def scan_essen(name: str) -> list[ScoreEntry]:
    """Folk tunes of one Essen ABC file that pass :func:`check_folk`."""
    from music21 import corpus

    out = []
    opus = corpus.parse(f"essenFolksong/{name}")
    for s in opus.scores:
        num = s.metadata.number
        m = _metre_of(s)
        k = check_folk(s) if m else None
        if m and k and num is not None:
            out.append(ScoreEntry(f"essenFolksong/{name}", int(num), "folk", k[0], k[1],
                                  m[0], m[1], 1))
    return out


def load_score(entry: ScoreEntry):  # noqa: ANN201 - music21 Score
    """Parse the score an entry names (ties merged)."""
    from music21 import corpus

    s = corpus.parse(entry.path, number=entry.number) if entry.number else corpus.parse(
        entry.path)
    return s.stripTies()


def score_notes(score) -> list[list[tuple[float, float, int]]]:  # noqa: ANN001
    """Per part, ``(offset_ql, duration_ql, midi)`` for every sounding note (grace notes out)."""
    parts = []
    for part in score.parts:
        notes = []
        for n in part.flatten().notes:
            dur = float(n.quarterLength)
            if dur <= 0:
                continue
            for p in n.pitches:
                notes.append((float(n.offset), dur, int(p.midi)))
        parts.append(notes)
    return parts


def measure_offsets(score) -> list[float]:  # noqa: ANN001
    """Offsets (quarters) where measures start in the first part, plus the end."""
    part = score.parts[0]
    offs = sorted({float(m.offset) for m in part.getElementsByClass("Measure")})
    end = float(score.highestTime)
    return [o for o in offs if o < end] + [end]


def tonic_cadence_offsets(score, tonic: int) -> set[float]:  # noqa: ANN001
    """Measure boundaries where the sonority just before has the tonic in the bass."""
    out = set()
    chords = list(score.chordify().flatten().getElementsByClass("Chord"))
    bounds = measure_offsets(score)
    for b in bounds:
        before = [c for c in chords if float(c.offset) < b <= float(c.offset + c.quarterLength)]
        if before and before[-1].bass().pitchClass == tonic:
            out.add(b)
    return out


def write_catalog(path: str | os.PathLike, workers: int = 2) -> int:
    """Scan music21's corpus and write the catalogue (``CATALOG_FILE`` format, atomically);
    returns the number of entries."""
    import multiprocessing as mp

    import music21

    with mp.get_context("spawn").Pool(workers) as pool:
        jobs = [pool.apply_async(scan_bach)] + [pool.apply_async(scan_essen, (n,))
                                                for n in ESSEN_FILES]
        entries = [e for j in jobs for e in j.get()]
    atomic_write_text(path, catalog_json(entries, music21.__version__))
    return len(entries)


def catalog_json(entries: list[ScoreEntry], music21_version: str) -> str:
    """The catalogue file's text: a JSON object with one entry (a list of ``CATALOG_FIELDS``
    values) per line, so that a rescan diffs line by line."""
    head = [("generator", "python -m mullm.data.scores"),
            ("music21_version", music21_version), ("fields", list(CATALOG_FIELDS))]
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head]
    rows = ",\n".join(f"  {json.dumps([getattr(e, f) for f in CATALOG_FIELDS])}"
                      for e in entries)
    return "{\n" + "\n".join(lines) + '\n "entries": [\n' + rows + "\n ]\n}\n"


def load_catalog(path: str | os.PathLike | None = None) -> list[ScoreEntry]:
    """The usable music21 scores stored in the package (or in ``path``).

    Raises:
        DataError: the file is not a catalogue of ``CATALOG_FIELDS`` rows (naming it).
    """
    if path is None:
        text = resources.files("mullm.data").joinpath(CATALOG_FILE).read_text("utf-8")
        where = f"mullm/data/{CATALOG_FILE}"
    else:
        text, where = Path(path).read_text("utf-8"), str(path)
    try:
        data = json.loads(text)
        if data["fields"] != list(CATALOG_FIELDS):
            raise DataError(f"{where}: fields {data['fields']} != {list(CATALOG_FIELDS)}; "
                            "regenerate it with `python -m mullm.data.scores`")
        return [ScoreEntry(*row) for row in data["entries"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{where}: not a music21 score catalogue ({exc!r}); regenerate it "
                        "with `python -m mullm.data.scores`") from None


if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name(CATALOG_FILE))
    print(write_catalog(out), "entries ->", out)
