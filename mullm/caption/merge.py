"""``merge_shards``: join the files of a sharded caption job into one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mullm.caption.records import (
    describe_diff,
    read_meta,
    read_records,
    rewrite_records,
    settings_key,
    write_meta,
)
from mullm.caption.settings import CaptionJobError


def _shards_missing(shards: list[str], allow_incomplete: bool) -> list[str]:
    """The ``i/n`` shards absent from ``shards`` (refused unless ``allow_incomplete``)."""
    counts = {int(s.split("/")[1]) for s in shards}
    if len(counts) > 1:
        raise CaptionJobError(f"shards of different counts cannot be merged: {shards}")
    if not counts:
        return []
    n = counts.pop()
    missing = [f"{i}/{n}" for i in range(n) if f"{i}/{n}" not in shards]
    if missing and not allow_incomplete:
        raise CaptionJobError(f"shard(s) {missing} are missing; pass them too, or "
                              "--allow-incomplete to merge what there is")
    return missing


def merge_shards(out: str | os.PathLike, shard_files: list[str | os.PathLike],
                 allow_incomplete: bool = False) -> dict[str, Any]:
    """Join shard caption files into ``out``: same settings everywhere, no duplicate ids.

    Returns a summary: ``records``, ``failed``, ``shards`` seen and ``missing`` shards.

    Raises:
        CaptionJobError: no shard files, a missing file or sidecar, shards made with other
            settings or shard counts, duplicate ids, or missing shards (unless
            ``allow_incomplete``).
    """
    if not shard_files:
        raise CaptionJobError("caption-merge needs at least one shard file")
    out = Path(out)
    metas, all_records = [], []
    seen: dict[str, str] = {}
    dups = []
    for f in shard_files:
        f = Path(f)
        if not f.is_file():
            raise CaptionJobError(f"{f}: shard file not found")
        if f.resolve() == out.resolve():
            raise CaptionJobError(f"{f}: the output file cannot also be an input")
        records = read_records(f)
        meta = read_meta(f)
        if metas and settings_key(meta) != settings_key(metas[0][1]):
            raise CaptionJobError(
                f"{f} was made with other settings than {metas[0][0]}: "
                f"{describe_diff(metas[0][1], meta)}")
        metas.append((f, meta))
        for r in records:
            if r["id"] in seen:
                dups.append(f"{r['id']!r} ({seen[r['id']]} and {f})")
            seen[r["id"]] = str(f)
            all_records.append(r)
    if dups:
        raise CaptionJobError(f"duplicate ids across shards: {', '.join(dups[:10])}"
                              f"{' ...' if len(dups) > 10 else ''}; were shards listed twice "
                              "or made with different --shard counts?")
    shards = sorted({m.get("shard") for _, m in metas if m.get("shard")})
    missing = _shards_missing(shards, allow_incomplete)
    all_records.sort(key=lambda r: r["id"])
    rewrite_records(out, all_records)
    meta = dict(metas[0][1])
    meta["shard"] = None
    meta["merged_from"] = [str(f) for f, _ in metas]
    write_meta(out, meta)
    return {"records": len(all_records),
            "failed": sum(1 for r in all_records if r.get("error")),
            "shards": shards, "missing": missing}
