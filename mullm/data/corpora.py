"""The shipped corpus definitions: one offline training corpus and its held-out check.

The quickstart, the learning benchmark and the tests' tiny form all use these definitions,
rendered once into the mullm cache (``$MULLM_CACHE/corpora/<name>``) and reused:

* ``offline``: balanced procedural clips (``mullm.data.balanced``) of 4-7 s with the
  ``train`` instrument set. 3,400 clips give each of the 24 keys ~110 training clips (the
  splits are a hash of the piece, 80 / 10 / 10) and each of the 11 families ~75 training
  clips per 1,000 (half the clips are single-family); tempo classes and metres ~900 each.
* ``heldout``: another seed with the ``heldout`` instrument set: instruments that never
  play in ``offline``, and tempi half a BPM away from any training tempo. Every clip of it
  is unseen music, whatever its split.

A smaller ``n`` renders the first ``n`` clips of the same plan (plans are prefix-stable),
which is what ``--tiny`` runs use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPORA: dict[str, dict[str, Any]] = {
    "offline": {"n": 3400, "seed": 0, "min_s": 4.0, "max_s": 7.0, "music21_fraction": 0.0,
                "single_family_fraction": 0.5, "balanced": True, "instrument_set": "train"},
    "heldout": {"n": 240, "seed": 1, "min_s": 4.0, "max_s": 7.0, "music21_fraction": 0.0,
                "single_family_fraction": 0.5, "balanced": True,
                "instrument_set": "heldout"},
}


def corpus_dir(name: str, n: int | None = None) -> Path:
    """Where corpus ``name`` (of ``n`` clips, default its full size) lives in the cache."""
    from mullm.llm import cache_root

    spec = _spec(name)
    n = spec["n"] if n is None else n
    return cache_root() / "corpora" / (name if n == spec["n"] else f"{name}-{n}")


def ensure_corpus(name: str, n: int | None = None, progress: bool = True,
                  workers: int = 2) -> Path:
    """Render corpus ``name`` (its first ``n`` clips) into the cache, skipping every clip
    already there (a finished corpus costs a plan and a file check per clip); returns the
    path of its ``metadata.jsonl``."""
    from mullm.data.corpus import build_corpus

    spec = dict(_spec(name))
    n_clips = spec.pop("n") if n is None else n
    spec.pop("n", None)
    out = corpus_dir(name, n_clips)
    full = corpus_dir(name)
    if n_clips < _spec(name)["n"] and _finished(full, _spec(name)):
        return _prefix(full, out, n_clips)
    try:
        return build_corpus(out, n_clips, workers=workers, progress=progress, **spec)
    except ValueError as exc:
        if "other settings" not in str(exc):
            raise
        # The folder is the cache's own: a corpus from an older build version is redone.
        return build_corpus(out, n_clips, workers=workers, progress=progress, overwrite=True,
                            **spec)


def _spec(name: str) -> dict[str, Any]:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}")
    return CORPORA[name]


def _finished(folder: Path, spec: dict[str, Any]) -> bool:
    """True when ``folder`` holds a finished build of ``spec`` (every clip rendered)."""
    import json

    from mullm.data.corpus import BUILD_VERSION

    meta, settings = folder / "metadata.jsonl", folder / "corpus.json"
    if not (meta.is_file() and settings.is_file()) or (folder / "metadata.partial.jsonl"
                                                       ).exists():
        return False
    built = json.loads(settings.read_text())
    if built.get("version") != BUILD_VERSION or any(built.get(k) != v for k, v in spec.items()):
        return False
    return sum(1 for line in meta.read_text().splitlines() if line.strip()) == spec["n"]


def _prefix(full: Path, out: Path, n: int) -> Path:
    """A metadata.jsonl in ``out`` listing the first ``n`` clips of the finished corpus in
    ``full`` (plans are prefix-stable, so these are exactly the clips a build of ``n`` would
    render); the audio stays where it is."""
    import json

    rows = [json.loads(x) for x in (full / "metadata.jsonl").read_text().splitlines()
            if x.strip()]
    plan_ids = {f"clip{i:05d}" for i in range(n)}
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "metadata.jsonl"
    lines = [json.dumps({**r, "audio": str((full / r["audio"]).resolve())}) + "\n"
             for r in rows if r["id"] in plan_ids]
    tmp = meta.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(meta)
    return meta
