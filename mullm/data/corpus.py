"""Build an offline music corpus with exact labels: ``metadata.jsonl`` + one WAV per clip.

Clips come from two sources (DESIGN.md section 2, "Real music offline"):

* ``music21``: Bach chorales and Essen folk tunes whose key is stated by the notation and
  confirmed by the music (see :mod:`mullm.data.scores`), transposed, re-orchestrated with
  random General MIDI programs and rendered at a random tempo;
* ``procedural``: pieces composed by :mod:`mullm.data.procedural` in ten styles, whose key,
  mode, tempo, metre and instruments are true by construction.

The whole build is a pure function of its arguments: a plan of clip specs is drawn from the
seed, each clip is rendered from its own spec and per-clip random stream, and metadata is
written sorted by id, so the same seed gives bit-identical metadata and audio whatever the
number of workers. WAVs are 16-bit PCM, mono, 22050 Hz by default.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mullm.data import procedural as P
from mullm.data.instruments import SINGLE_FAMILY_PROGRAMS
from mullm.errors import DataError
from mullm.utils.atomic import atomic_path, atomic_write_text
from mullm.utils.jsonl import iter_jsonl
from mullm.utils.music import MODES, PITCH_NAMES, pitch_class, tempo_class

METADATA_FIELDS = ("id", "audio", "key", "mode", "tempo_bpm", "tempo_class", "time_signature",
                   "metre", "instruments", "families", "style", "source", "piece",
                   "duration_s", "split")
TAIL_S = 1.0  # release/reverb tail rendered after the last note
SPLIT_FRACTIONS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
# felt-beat tempo ranges of the score collections (compound metres count dotted quarters)
SCORE_TEMPI = {"chorale": (56, 100), "folk": (70, 140), "folk-compound": (50, 96)}
SINGLE_FAMILIES = sorted(SINGLE_FAMILY_PROGRAMS)
# share of score clips per collection: folk tunes are all major, chorales balance the modes
SCORE_COLLECTIONS = {"chorale": 0.7, "folk": 0.3}
BUILD_VERSION = 3  # bump when the plan or rendering changes, so resumes refuse stale clips


def split_for(piece: str, seed: int) -> str:
    """Split of a piece: a hash of (seed, piece), so all clips of one piece share it."""
    h = hashlib.sha256(f"{seed}:{piece}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    acc = 0.0
    for name, frac in SPLIT_FRACTIONS:
        acc += frac
        if u < acc:
            return name
    return SPLIT_FRACTIONS[-1][0]


def score_catalog() -> list:
    """Usable music21 scores (a list of :class:`mullm.data.scores.ScoreEntry`), read from
    the catalogue shipped as package data."""
    from mullm.data.scores import load_catalog

    return load_catalog()


def plan_corpus(n: int, seed: int, *, min_s: float = 10.0, max_s: float = 30.0,
                music21_fraction: float = 0.4, single_family_fraction: float = 0.3,
                balanced: bool = False, instrument_set: str = "all") -> list[dict]:
    """The clip specs of a corpus: everything random is drawn here or from ``[seed, index]``.

    ``balanced`` draws the procedural clips' answers first (``mullm.data.balanced``: keys,
    tempo classes, metres and single-family families equally often); ``instrument_set``
    ("all", "train", "heldout"; ``mullm.data.instruments``) limits the GM programs.
    """
    from mullm.data.balanced import BalancedDraw
    from mullm.data.instruments import program_pools

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < min_s <= max_s:
        raise ValueError(f"need 0 < min_s <= max_s, got min_s={min_s} max_s={max_s}")
    rng = np.random.default_rng(seed)
    pools = program_pools(instrument_set)
    by_coll: dict[str, list] = {}
    for e in (score_catalog() if music21_fraction > 0 else []):
        by_coll.setdefault(e.collection, []).append(e)
    colls = [c for c in SCORE_COLLECTIONS if by_coll.get(c)]
    weights = np.array([SCORE_COLLECTIONS[c] for c in colls], dtype=float)
    # each collection is walked in a seeded order; it repeats (new transposition, tempo and
    # instruments) only once every piece has been used
    orders = {c: list(rng.permutation(len(by_coll[c]))) for c in colls}
    used = dict.fromkeys(colls, 0)
    specs = []
    styles = sorted(P.STYLES)
    draw = BalancedDraw(rng, instrument_set) if balanced else None
    for i in range(n):
        spec: dict = {"index": i, "id": f"clip{i:05d}",
                      "duration_s": float(rng.uniform(min_s, max_s)),
                      "loudness_db": float(rng.uniform(-30, -16)), "min_s": min_s,
                      "max_s": max_s}
        single = rng.random() < single_family_fraction
        if colls and rng.random() < music21_fraction:
            coll = colls[int(rng.choice(len(colls), p=weights / weights.sum()))]
            e = by_coll[coll][int(orders[coll][used[coll] % len(orders[coll])])]
            used[coll] += 1
            lo, hi = SCORE_TEMPI["folk-compound" if e.collection == "folk"
                                 and P.METRES[e.time_signature].beat_ql != 1.0
                                 else e.collection]
            fam = SINGLE_FAMILIES[int(rng.integers(len(SINGLE_FAMILIES)))]
            mel, chd, bas = pools.single_family[fam]
            if e.parts == 1:  # a solo line: one instrument, drawn family first for balance
                programs = [int(rng.choice(mel))]
            elif single:
                programs = [int(rng.choice(mel))] + [int(rng.choice(chd))
                                                     for _ in range(e.parts - 2)]
                programs.append(int(rng.choice(bas)))
            else:
                programs = [int(rng.choice(pools.melody))] + [int(rng.choice(pools.chords))
                                                              for _ in range(e.parts - 2)]
                programs.append(int(rng.choice(pools.bass)))
            spec.update(kind="score", entry=list(e.__dict__.values()),
                        shift=int(rng.integers(-5, 7)), tempo_bpm=int(rng.integers(lo, hi + 1)),
                        programs=programs)
        elif draw is not None:
            spec.update(kind="procedural", seed=[int(seed), i], **draw.spec(single))
        else:
            style = styles[int(rng.integers(len(styles)))]
            st = P.STYLES[style]
            spec.update(kind="procedural", style=style,
                        metre=st.metres[int(rng.integers(len(st.metres)))],
                        tempo_bpm=int(rng.integers(st.tempo[0], st.tempo[1] + 1)),
                        tonic=int(rng.integers(12)), mode="major" if rng.random() < 0.5
                        else "minor",
                        single_family=SINGLE_FAMILIES[int(rng.integers(len(SINGLE_FAMILIES)))]
                        if single else None, seed=[int(seed), i])
        specs.append(spec)
    return specs


def _piece_name(spec: dict) -> str:
    if spec["kind"] == "procedural":
        return f"procedural/{spec['seed'][0]}/{spec['index']:05d}"
    path, number = spec["entry"][0], spec["entry"][1]
    return f"{path}#{number}" if number else path


def _procedural_notes(spec: dict
                      ) -> tuple[list, dict[int, int], dict, list[str], list[str], float]:
    rng = np.random.default_rng(spec["seed"])
    m = P.METRES[spec["metre"]]
    bar_s = m.bar_ql * 60.0 / (spec["tempo_bpm"] * m.beat_ql)
    # whole bars; the tail and the closing crash must still fit under max_s
    lo = math.ceil((spec["min_s"] - TAIL_S) / bar_s)
    hi = math.floor((spec["max_s"] - TAIL_S - 0.4) / bar_s)
    want = math.floor((spec["duration_s"] - TAIL_S - 0.4) / bar_s)
    bars = max(2, min(max(want, lo), max(hi, 2)))
    arr = P.compose(rng, style=spec["style"], tonic=spec["tonic"], mode=spec["mode"],
                    tempo_bpm=spec["tempo_bpm"], metre=spec["metre"], n_bars=bars,
                    single_family=spec["single_family"],
                    instrument_set=spec.get("instrument_set", "all"))
    spq = arr.seconds_per_quarter
    notes = [(n.start * spq, (n.start + n.dur) * spq, n.pitch, n.velocity, n.channel)
             for n in arr.notes]
    labels = {k: arr.labels[k] for k in ("key", "mode", "time_signature", "metre", "style")}
    return notes, arr.programs, labels, arr.instruments(), arr.families(), bars * bar_s


def _score_notes(spec: dict
                 ) -> tuple[list, dict[int, int], dict, list[str], list[str], float]:
    from mullm.data.scores import (
        ScoreEntry,
        load_score,
        measure_offsets,
        score_notes,
        tonic_cadence_offsets,
    )

    e = ScoreEntry(*spec["entry"])
    score = load_score(e)
    m = P.METRES[e.time_signature]
    spq = 60.0 / (spec["tempo_bpm"] * m.beat_ql)
    parts = score_notes(score)
    if len(parts) != len(spec["programs"]):
        raise DataError(f"{e.path}: expected {len(spec['programs'])} parts, found {len(parts)}")
    length = float(score.highestTime)
    bounds = measure_offsets(score)
    cadences = tonic_cadence_offsets(score, e.tonic)
    # short tunes are played again (as folk tunes are) until they reach min_s
    reps = max(1, math.ceil((spec["min_s"] - TAIL_S) / (length * spq)))
    all_bounds = sorted({b + r * length for r in range(reps) for b in bounds})
    good = {b + r * length for r in range(reps) for b in cadences}
    dur = lambda b: b * spq + TAIL_S  # noqa: E731
    in_range = [b for b in all_bounds if spec["min_s"] <= dur(b) <= spec["max_s"]]
    if in_range:
        pool = [b for b in in_range if b in good] or in_range
        cut = min(pool, key=lambda b: (abs(dur(b) - spec["duration_s"]), b))
    else:
        under = [b for b in all_bounds if b > 0 and dur(b) <= spec["max_s"]]
        cut = max(under) if under else (spec["max_s"] - TAIL_S) / spq
    notes = []
    for ch, part in enumerate(parts):
        vel = 64 + (ch * 7 + spec["index"]) % 30
        for r in range(reps):
            for off, d, pitch in part:
                start = off + r * length
                if start >= cut - 1e-9:
                    continue
                end = min(start + d, cut)
                p = min(108, max(21, pitch + spec["shift"]))
                notes.append((start * spq, end * spq, p, vel, ch))
    programs = {ch: p for ch, p in enumerate(spec["programs"])}
    labels = {"key": PITCH_NAMES[(e.tonic + spec["shift"]) % 12], "mode": e.mode,
              "time_signature": e.time_signature, "metre": m.metre, "style": e.collection}
    instruments = sorted({P.GM_PROGRAMS[p] for p in programs.values()})
    families = sorted({P.gm_family(p) for p in programs.values()})
    return notes, programs, labels, instruments, families, cut * spq


def render_clip(spec: dict, out_dir: str | os.PathLike, *, soundfont: str | None = None,
                sample_rate: int = 22050, split_seed: int | None = None) -> dict:
    """Render one planned clip to ``out_dir/audio/<id>.wav`` and return its metadata row."""
    import soundfile as sf

    from mullm.data.render import render_events, set_loudness

    out_dir = Path(out_dir)
    if spec["kind"] == "procedural":
        notes, programs, labels, instruments, families, length_s = _procedural_notes(spec)
        drum_channel = P.DRUM_CHANNEL
        source = "procedural"
    else:
        notes, programs, labels, instruments, families, length_s = _score_notes(spec)
        drum_channel = None
        source = "music21"
    audio = render_events(notes, programs, soundfont=soundfont, sample_rate=sample_rate,
                          drum_channel=drum_channel, tail_s=TAIL_S, length_s=length_s)
    audio = set_loudness(audio, spec["loudness_db"])
    rel = f"audio/{spec['id']}.wav"
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16")
    piece = _piece_name(spec)
    seed = split_seed if split_seed is not None else spec.get("seed", [0])[0]
    row = {
        "id": spec["id"], "audio": rel, "key": labels["key"], "mode": labels["mode"],
        "tempo_bpm": float(spec["tempo_bpm"]), "tempo_class": tempo_class(spec["tempo_bpm"]),
        "time_signature": labels["time_signature"], "metre": labels["metre"],
        "instruments": instruments, "families": families, "style": labels["style"],
        "source": source, "piece": piece, "duration_s": round(len(audio) / sample_rate, 3),
        "split": split_for(piece, int(seed)),
    }
    return row


def _job(args: tuple) -> tuple[int, dict | None, str | None]:
    spec, out_dir, soundfont, sample_rate, seed = args
    try:
        return spec["index"], render_clip(spec, out_dir, soundfont=soundfont,
                                          sample_rate=sample_rate, split_seed=seed), None
    except Exception as e:  # noqa: BLE001 - recorded in errors.jsonl; the build goes on
        return spec["index"], None, f"{type(e).__name__}: {e}"


def _read_rows(path: Path) -> dict[str, dict]:
    rows = {}
    if path.is_file():
        for line in iter_jsonl(path):
            try:
                r = line.object
            except DataError:
                continue  # a line cut short by a crash: that clip is simply redone
            rows[r["id"]] = r
    return rows


def build_corpus(out: str | os.PathLike, n: int, seed: int = 0, *, workers: int = 2,
                 min_s: float = 10.0, max_s: float = 30.0, soundfont: str | None = None,
                 sample_rate: int = 22050, music21_fraction: float = 0.4,
                 single_family_fraction: float = 0.3, balanced: bool = False,
                 instrument_set: str = "all", progress: bool = True,
                 overwrite: bool = False) -> Path:
    """Render a corpus into ``out`` and return the path of its ``metadata.jsonl``
    (``balanced`` and ``instrument_set``: see ``plan_corpus``)."""
    from mullm.data.render import find_soundfont

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sf_path = find_soundfont(soundfont)
    settings = {"version": BUILD_VERSION, "n": n, "seed": seed, "min_s": min_s, "max_s": max_s,
                "sample_rate": sample_rate, "soundfont": sf_path.name,
                "music21_fraction": music21_fraction,
                "single_family_fraction": single_family_fraction}
    # Recorded only when set, so that corpora built before these options still resume.
    if balanced:
        settings["balanced"] = True
    if instrument_set != "all":
        settings["instrument_set"] = instrument_set
    settings_path = out / "corpus.json"
    meta_path = out / "metadata.jsonl"
    partial_path = out / "metadata.partial.jsonl"
    if settings_path.is_file() and not overwrite:
        old = json.loads(settings_path.read_text())
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise ValueError(f"{out} holds a corpus built with other settings {diff} "
                             "(old, new); use another folder or overwrite=True / --overwrite")
    if overwrite:
        for p in (meta_path, partial_path, out / "errors.jsonl"):
            p.unlink(missing_ok=True)
    atomic_write_text(settings_path, json.dumps(settings, indent=1) + "\n")

    specs = plan_corpus(n, seed, min_s=min_s, max_s=max_s, music21_fraction=music21_fraction,
                        single_family_fraction=single_family_fraction, balanced=balanced,
                        instrument_set=instrument_set)
    done = _read_rows(meta_path) | _read_rows(partial_path)
    done = {k: r for k, r in done.items() if (out / r["audio"]).is_file()}
    todo = [s for s in specs if s["id"] not in done]
    failures = 0
    jobs = [(s, str(out), str(sf_path), sample_rate, seed) for s in todo]
    with open(partial_path, "a") as partial, open(out / "errors.jsonl", "a") as errors:
        for idx, row, err in _run(jobs, workers, progress):
            spec = specs[idx]
            if row is None:
                failures += 1
                errors.write(json.dumps({"input": f"{spec['id']} ({_piece_name(spec)})",
                                         "error": err}) + "\n")
                errors.flush()
            else:
                done[row["id"]] = row
                partial.write(json.dumps(row) + "\n")
                partial.flush()
    rows = [done[s["id"]] for s in specs if s["id"] in done]
    atomic_write_text(meta_path, "".join(json.dumps(r) + "\n" for r in rows))
    partial_path.unlink(missing_ok=True)
    if progress:
        print(f"build-corpus: {len(rows)} clips ({len(specs) - len(todo)} already there), "
              f"{failures} failed -> {meta_path}", file=sys.stderr)
    return meta_path


def _run(jobs: list, workers: int, progress: bool) -> Iterable[tuple]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="build-corpus", unit="clip", disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for j in jobs:
                yield _job(j)
                bar.update()
        else:
            # spawn: FluidSynth and music21 hold state that is not safe to fork
            with mp.get_context("spawn").Pool(workers) as pool:
                for res in pool.imap_unordered(_job, jobs, chunksize=1):
                    yield res
                    bar.update()
    finally:
        bar.close()


def read_metadata(path: str | os.PathLike, *, check_audio: bool = True) -> list[dict]:
    """Read and check a ``metadata.jsonl``; errors name the file and line."""
    path = Path(path)
    rows = []
    for line in iter_jsonl(path):
        r, where = line.object, line.where
        missing = [f for f in ("id", "audio") if f not in r]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}")
        if "key" in r and r["key"] is not None:
            try:
                pitch_class(r["key"])
            except ValueError as e:
                raise DataError(f"{where}: {e}") from None
        if r.get("mode") is not None and r["mode"] not in MODES:
            raise DataError(f"{where}: mode {r['mode']!r} is not 'major' or 'minor'")
        if check_audio:
            a = Path(r["audio"])
            a = a if a.is_absolute() else path.parent / a
            if not a.is_file():
                raise DataError(f"{where}: audio file {a} does not exist")
        rows.append(r)
    return rows
