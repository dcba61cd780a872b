"""build-corpus: labels true to the scores and generators, determinism, splits, resume."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import fluidsynth  # noqa: F401 - a missing dependency must fail, not skip
import music21  # noqa: F401 - a missing dependency must fail, not skip
import numpy as np
import pytest
import soundfile as sf

from mullm.data import corpus as C
from mullm.data import procedural as P
from mullm.data.instruments import HELDOUT_BASS, HELDOUT_PROGRAMS, program_pools
from mullm.errors import DataError
from mullm.utils.music import PITCH_NAMES, tempo_class

N, SEED, MIN_S, MAX_S = 6, 11, 4.0, 7.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    C.build_corpus(out, N, SEED, workers=1, min_s=MIN_S, max_s=MAX_S, music21_fraction=0.5,
                   progress=False)
    return out


def _rows(out: Path) -> list[dict]:
    return C.read_metadata(out / "metadata.jsonl")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_metadata_fields_and_audio(built: Path) -> None:
    rows = _rows(built)
    assert len(rows) == N
    assert not (built / "errors.jsonl").read_text().strip()
    for r in rows:
        assert tuple(r) == C.METADATA_FIELDS
        assert r["key"] in PITCH_NAMES and r["mode"] in ("major", "minor")
        assert r["tempo_class"] == tempo_class(r["tempo_bpm"])
        assert r["metre"] == P.METRES[r["time_signature"]].metre
        assert r["split"] in ("train", "valid", "test")
        info = sf.info(built / r["audio"])
        assert info.samplerate == 22050 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.duration == pytest.approx(r["duration_s"], abs=1e-3)
        assert MIN_S <= r["duration_s"] <= MAX_S + 0.01
        y, _ = sf.read(built / r["audio"])
        assert np.abs(y).max() > 0.01  # not silent
    assert {r["source"] for r in rows} == {"procedural", "music21"}


def test_procedural_labels_match_generator(built: Path) -> None:
    specs = C.plan_corpus(N, SEED, min_s=MIN_S, max_s=MAX_S, music21_fraction=0.5)
    rows = {r["id"]: r for r in _rows(built)}
    for s in specs:
        if s["kind"] != "procedural":
            continue
        notes, programs, labels, inst, fams, _ = C._procedural_notes(s)
        r = rows[s["id"]]
        assert r["key"] == PITCH_NAMES[s["tonic"]] == labels["key"]
        assert r["mode"] == s["mode"] and r["tempo_bpm"] == s["tempo_bpm"]
        assert r["time_signature"] == s["metre"] and r["style"] == s["style"]
        assert r["instruments"] == inst and r["families"] == fams
        # the last melody note is the tonic: the piece cadences in its labelled key
        melody = [n for n in notes if n[4] == 0]
        assert melody[-1][2] % 12 == s["tonic"]
        if s["single_family"]:
            assert r["families"] == [s["single_family"]] and "Drum Kit" not in r["instruments"]


def test_score_labels_match_music21(built: Path) -> None:
    from mullm.data.scores import ScoreEntry, check_chorale, check_folk, load_score

    specs = C.plan_corpus(N, SEED, min_s=MIN_S, max_s=MAX_S, music21_fraction=0.5)
    rows = {r["id"]: r for r in _rows(built)}
    scores = [s for s in specs if s["kind"] == "score"]
    assert scores
    for s in scores:
        e = ScoreEntry(*s["entry"])
        score = load_score(e)
        tonic, mode = (check_chorale if e.collection == "chorale" else check_folk)(score)
        r = rows[s["id"]]
        assert r["key"] == PITCH_NAMES[(tonic + s["shift"]) % 12] and r["mode"] == mode
        assert r["piece"].startswith(e.path)


def test_known_chorale_keys() -> None:
    from music21 import corpus

    from mullm.data.scores import check_chorale

    assert check_chorale(corpus.parse("bach/bwv10.7")) == (7, "minor")  # G minor, Picardy end
    # 1 sharp but a cadence that does not confirm G major or E minor: left out, not guessed
    assert check_chorale(corpus.parse("bach/bwv153.1")) is None


@pytest.mark.parametrize("k, body, want", [
    ("G", "GABc dBGB | cBAG ABGD | GABc dBGB | cBAF G4 |]", (7, "major")),
    ("Em", "EFGA BGEG | FEDE FGAF | EFGA BGEG | FDFA E4 |]", (4, "minor")),
    ("Ddor", "DEFG AFDF | EDCD EFGE | DEFG AFDF | ECEG D4 |]", None),
])
def test_folk_key_rules(k: str, body: str, want: tuple | None) -> None:
    from music21 import converter

    from mullm.data.scores import check_folk

    abc = f"X:1\nT:t\nM:4/4\nL:1/8\nK:{k}\n{body}\n"
    assert check_folk(converter.parse(abc, format="abc")) == want


def test_same_seed_same_corpus(built: Path, tmp_path: Path) -> None:
    C.build_corpus(tmp_path, N, SEED, workers=2, min_s=MIN_S, max_s=MAX_S,
                   music21_fraction=0.5, progress=False)
    assert (tmp_path / "metadata.jsonl").read_bytes() == (built / "metadata.jsonl").read_bytes()
    for r in _rows(built):
        assert _sha(tmp_path / r["audio"]) == _sha(built / r["audio"])


def test_splits_disjoint_by_piece() -> None:
    # enough score clips that pieces repeat (new transpositions): one split per piece
    specs = C.plan_corpus(1200, 3, music21_fraction=1.0)
    splits: dict[str, set] = {}
    for s in specs:
        piece = C._piece_name(s)
        splits.setdefault(piece, set()).add(C.split_for(piece, 3))
    assert len(splits) < len(specs)  # some pieces were used more than once
    assert all(len(v) == 1 for v in splits.values())
    assert {x for v in splits.values() for x in v} == {"train", "valid", "test"}


def test_plan_variety() -> None:
    specs = C.plan_corpus(400, 0)
    proc = [s for s in specs if s["kind"] == "procedural"]
    assert {s["metre"] for s in proc} == set(P.METRES)
    assert {s["style"] for s in proc} == set(P.STYLES)
    assert {tempo_class(s["tempo_bpm"]) for s in specs} == {"slow", "moderate", "fast"}
    single = sum(1 for s in specs if s.get("single_family")) / len(proc)
    assert 0.2 < single < 0.4


def test_resume_and_errors(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                           ) -> None:
    import shutil

    shutil.copytree(built, tmp_path / "c")
    out = tmp_path / "c"
    rows = _rows(out)
    (out / rows[2]["audio"]).unlink()
    calls = []
    real = C.render_clip

    def spy(spec: dict, *a, **kw) -> dict:
        calls.append(spec["id"])
        if spec["id"] == rows[2]["id"]:
            raise RuntimeError("boom")
        return real(spec, *a, **kw)

    monkeypatch.setattr(C, "render_clip", spy)
    C.build_corpus(out, N, SEED, workers=1, min_s=MIN_S, max_s=MAX_S, music21_fraction=0.5,
                   progress=False)
    assert calls == [rows[2]["id"]]  # only the missing clip was rendered again
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert errs[-1]["error"] == "RuntimeError: boom" and rows[2]["id"] in errs[-1]["input"]
    assert [r["id"] for r in _rows(out)] == [r["id"] for i, r in enumerate(rows) if i != 2]
    monkeypatch.setattr(C, "render_clip", real)
    C.build_corpus(out, N, SEED, workers=1, min_s=MIN_S, max_s=MAX_S, music21_fraction=0.5,
                   progress=False)
    assert (out / "metadata.jsonl").read_bytes() == (built / "metadata.jsonl").read_bytes()
    with pytest.raises(ValueError, match="other settings"):
        C.build_corpus(out, N + 1, SEED, workers=1, min_s=MIN_S, max_s=MAX_S, progress=False)


def test_cli_build_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mullm.cli import main

    rc = main(["build-corpus", "--out", str(tmp_path), "--n", "2", "--seed", "1",
               "--workers", "1", "--min-s", "3", "--max-s", "5", "--quiet"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["clips"] == 2 and res["errors"] == 0


def test_soundfont_fallback_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mullm.data import render

    monkeypatch.setattr(render, "DEBIAN_SOUNDFONT", tmp_path / "missing.sf2")
    sf2 = render.find_soundfont()
    assert sf2.name == "TimGM6mb.sf2"
    y = render.render_events([(0.0, 0.5, 69, 100, 0), (0.0, 0.2, 36, 100, 9)], {0: 0},
                             soundfont=sf2, tail_s=0.3)
    assert len(y) == int(round(0.8 * 22050)) and np.abs(y).max() > 0
    with pytest.raises(FileNotFoundError, match="soundfont"):
        render.find_soundfont(tmp_path / "nope.sf2")


def test_score_catalogue_is_package_data_in_the_writers_format(tmp_path: Path) -> None:
    from importlib import resources

    from mullm.data import scores as S

    shipped = resources.files("mullm.data").joinpath(S.CATALOG_FILE).read_text("utf-8")
    entries = S.load_catalog()
    assert len(entries) > 2000 and {e.collection for e in entries} == {"chorale", "folk"}
    version = json.loads(shipped)["music21_version"]
    # What `python -m mullm.data.scores` writes reads back to the same entries, byte for byte.
    assert S.catalog_json(entries, version) == shipped
    (tmp_path / "bad.json").write_text('{"fields": ["path"], "entries": []}')
    with pytest.raises(DataError, match=r"bad\.json: fields \['path'\]"):
        S.load_catalog(tmp_path / "bad.json")


@pytest.mark.parametrize("instrument_set", ["all", "train", "heldout"])
def test_single_family_programs_stay_in_their_family(instrument_set: str) -> None:
    # A "single-family" clip whose chords came from another family (strings once drew
    # String Ensemble, an "ensemble" program) gets no family question: that family then had
    # a quarter of the others' training clips.
    pools = program_pools(instrument_set)
    for family, roles in pools.single_family.items():
        for programs in roles:
            assert programs and {P.gm_family(p) for p in programs} == {family}, (family, roles)


def test_train_and_heldout_instruments_are_disjoint() -> None:
    train, held = program_pools("train"), program_pools("heldout")

    def every(pools: object) -> set[int]:
        fams = {p for roles in pools.single_family.values() for r in roles for p in r}
        return fams | set(pools.melody) | set(pools.chords) | set(pools.bass)

    assert not every(train) & every(held)
    assert set(held.single_family) == set(train.single_family)


def test_balanced_plan_balances_every_answer_and_is_prefix_stable() -> None:
    specs = C.plan_corpus(240, 4, min_s=4, max_s=7, music21_fraction=0.0,
                          single_family_fraction=0.5, balanced=True, instrument_set="train")
    assert specs[:30] == C.plan_corpus(30, 4, min_s=4, max_s=7, music21_fraction=0.0,
                                       single_family_fraction=0.5, balanced=True,
                                       instrument_set="train")
    keys = Counter((s["tonic"], s["mode"]) for s in specs)
    assert len(keys) == 24 and set(keys.values()) == {10}
    assert set(Counter(tempo_class(s["tempo_bpm"]) for s in specs).values()) == {80}
    assert set(Counter(P.METRES[s["metre"]].metre for s in specs).values()) == {120}
    fams = Counter(s["single_family"] for s in specs if s["single_family"])
    assert len(fams) == 11 and max(fams.values()) - min(fams.values()) <= 1
    held = C.plan_corpus(60, 5, min_s=4, max_s=7, music21_fraction=0.0, balanced=True,
                         instrument_set="heldout")
    assert all(s["tempo_bpm"] % 1 == 0.5 for s in held)  # never a training tempo


def test_heldout_clip_renders_with_heldout_instruments(tmp_path: Path) -> None:
    meta = C.build_corpus(tmp_path, 2, 6, workers=1, min_s=3.0, max_s=4.0,
                          music21_fraction=0.0, single_family_fraction=0.5, balanced=True,
                          instrument_set="heldout", progress=False)
    held = {P.GM_PROGRAMS[p] for ps in HELDOUT_PROGRAMS.values() for p in ps} | \
        {P.GM_PROGRAMS[p] for p in HELDOUT_BASS}
    for r in C.read_metadata(meta):
        assert set(r["instruments"]) - {P.DRUM_KIT} <= held
