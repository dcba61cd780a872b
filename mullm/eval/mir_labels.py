"""How good are the MIR labellers of ``mullm.data.mir`` on a corpus with exact labels?

``evaluate_mir`` runs the tempo and key estimators on every row of a rendered corpus
(``metadata.jsonl`` rows) and scores them with ``mullm.eval.mir_metrics`` (mir_eval): tempo
Acc1 / Acc2 and named relations, key accuracy, MIREX weighted score and relation counts per
key profile.
"""

from __future__ import annotations

import os
from pathlib import Path

from mullm.eval.mir_metrics import (
    key_label,
    key_relation,
    mirex_key_score,
    tempo_accuracy,
    tempo_relation,
)


def evaluate_mir(rows: list[dict], meta_dir: str | os.PathLike, *,
                 profiles: tuple[str, ...] = ("krumhansl", "temperley")) -> dict:
    """Tempo and key accuracy of the estimators on labelled rows (a rendered corpus).

    Args:
        rows: ``metadata.jsonl`` rows with ``audio`` (relative to ``meta_dir``), ``key``,
            ``mode`` and ``tempo_bpm``.
        meta_dir: the folder the rows' audio paths are relative to.
        profiles: key profiles of ``mullm.data.mir.PROFILES`` to compare.

    Returns:
        ``{"n", "tempo_relations", "tempo_acc1", "tempo_acc2", "key": {profile: {"relations",
        "exact", "exact_relative_fifth", "mirex_weighted"}}, "items": [...]}``; rates are
        fractions of ``n`` (0 when there are no rows).
    """
    from mullm.data.mir import chroma, estimate_key, estimate_tempo, load_audio

    meta_dir = Path(meta_dir)
    tempo_rel: dict[str, int] = {}
    key_rel: dict[str, dict[str, int]] = {p: {} for p in profiles}
    key_score = dict.fromkeys(profiles, 0.0)
    per, refs, ests = [], [], []
    for r in rows:
        y = load_audio(meta_dir / r["audio"])
        bpm, _ = estimate_tempo(y)
        c = chroma(y)
        # tempo_bpm counts dotted quarters in 6/8 and 9/8; trackers often lock to eighths
        tr = tempo_relation(r["tempo_bpm"], bpm)
        tempo_rel[tr] = tempo_rel.get(tr, 0) + 1
        refs.append(r["tempo_bpm"])
        ests.append(bpm)
        ref_key = key_label(r["key"], r["mode"])
        item = {"id": r["id"], "tempo_true": r["tempo_bpm"], "tempo_est": round(bpm, 1),
                "tempo": tr, "key_true": ref_key}
        for p in profiles:
            k, m, _ = estimate_key(y, chroma_frames=c, profile=p)
            est_key = key_label(k, m)
            rel = key_relation(ref_key, est_key)
            key_rel[p][rel] = key_rel[p].get(rel, 0) + 1
            key_score[p] += mirex_key_score(ref_key, est_key)
            item[f"key_{p}"] = est_key
            item[f"key_{p}_relation"] = rel
        per.append(item)
    n = len(rows)
    acc1, acc2 = tempo_accuracy(refs, ests) if n else (0.0, 0.0)
    out = {"n": n, "tempo_relations": tempo_rel, "tempo_acc1": acc1, "tempo_acc2": acc2,
           "key": {}, "items": per}
    for p in profiles:
        rel = key_rel[p]
        out["key"][p] = {
            "relations": rel, "exact": rel.get("exact", 0) / n if n else 0.0,
            "exact_relative_fifth": sum(rel.get(k, 0) for k in ("exact", "relative", "fifth"))
            / n if n else 0.0,
            "mirex_weighted": key_score[p] / n if n else 0.0}
    return out


__all__ = ["evaluate_mir"]
