"""The resumable, shardable caption job behind ``mullm caption``.

One writer per output file (an exclusive lock); on start a partial last line is cut away,
the file's settings are checked against this run's (a different model or settings is
refused), duplicate records are collapsed (a success beats a failure) and, with
``retry_failed``, failed records are dropped so their items run again. Items already in the
file are skipped; each new record is appended durably as it finishes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.caption.engine import Captioner
from mullm.caption.inputs import CaptionItem, resolve_inputs, select_shard
from mullm.caption.records import (
    FORMAT,
    RecordWriter,
    describe_diff,
    meta_path,
    read_meta,
    settings_key,
    write_meta,
)
from mullm.caption.settings import DEFAULT_PROMPT, CaptionJobError, CaptionSettings
from mullm.errors import DataError, OutputError
from mullm.model_io import model_fingerprint
from mullm.utils.files import check_output_path
from mullm.utils.records import RecordJobStats, keep_records, locked_records

if TYPE_CHECKING:
    from mullm.model import MusicLLM


@dataclass
class CaptionStats(RecordJobStats):
    """Counts and times for the final summary table (``skipped``: already in the file)."""

    items: int = 0  # inputs of this run (of this shard)
    previously_succeeded: int = 0  # skipped items whose record is a success

    def table(self) -> str:
        """A small fixed-width table for the end of a job."""
        rate = self.audio_s / self.wall_s if self.wall_s > 0 else 0.0
        per_item = (self.succeeded + self.failed) / self.wall_s if self.wall_s > 0 else 0.0
        rows = [
            ("items", f"{self.items}"),
            ("already done (skipped)", f"{self.skipped}"),
            ("succeeded", f"{self.succeeded}"),
            ("failed", f"{self.failed}"),
            ("audio hours", f"{self.audio_s / 3600:.3f}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("throughput", f"{rate:.1f} s audio / s, {per_item:.2f} items / s"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class _RecordSink:
    """Receives finished records: appends each durably, counts it, moves the bar."""

    def __init__(self, writer: RecordWriter, stats: CaptionStats, bar: Any) -> None:
        self.writer, self.stats, self.bar = writer, stats, bar

    def __call__(self, rec: dict[str, Any]) -> None:
        try:
            self.writer.write(rec)
        except (ValueError, TypeError) as exc:
            # A record JSON cannot hold (never expected: json_line takes any str). Its item
            # still gets exactly one record, an error, and the job goes on; a write that
            # fails (disk full: OSError) stops the job instead, as it must.
            rec = {**rec, "caption": None, "segments": [],
                   "error": f"{rec['path']}: the record could not be written as JSON "
                            f"({type(exc).__name__}: {exc})",
                   "duration_s": None}
            rec["generation"] = {**rec["generation"], "warnings": []}
            self.writer.write(rec)
        self.stats.count(rec)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(ok=self.stats.succeeded, failed=self.stats.failed,
                                 audio_h=f"{self.stats.audio_s / 3600:.2f}", refresh=False)


def _check_resumable(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Refuse to append this run's records to a file written with other settings."""
    if not records:
        return
    old = read_meta(out)
    if settings_key(old) != settings_key(meta) or old.get("shard") != meta["shard"]:
        raise CaptionJobError(
            f"{out} was written with other settings, so its records cannot be mixed "
            f"with this run's ({describe_diff(old, meta)}); rerun with the same "
            "model and settings to resume, or write to a new --out file"
        )


def run_caption_job(model: MusicLLM, inputs: list[str], out: str | os.PathLike,
                    prompt: str = DEFAULT_PROMPT, batch_size: int = 8,
                    settings: CaptionSettings | None = None,
                    shard: tuple[int, int] | None = None, retry_failed: bool = False,
                    model_name: str | None = None, progress: bool | None = None,
                    log: Callable[[str], None] | None = None,
                    exclude: Sequence[str | os.PathLike] = ()) -> CaptionStats:
    """Caption ``inputs`` into ``out`` (resuming it); returns the counts for the summary.

    Every input gets exactly one record in ``out``: a caption or an error. The job's own
    files (``out``, its sidecar and lock, and ``exclude``) are never inputs, even when they
    lie in an input folder.

    Raises:
        OutputError: ``out`` cannot be written (checked before anything else).
        CaptionJobError: the file holds records made with another model or settings, or
            its sidecar is missing; bad shard or settings.
        LockedError: another job is writing ``out``.
        DataError: no inputs, or a manifest or the caption file is malformed (file:line).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.time()
    out = Path(out)
    check_output_path(out, error=OutputError)
    cap = Captioner(model, prompt, batch_size, settings, model_name)
    items = job_inputs(inputs, out, log, also_exclude=exclude)
    if shard is not None:
        items = select_shard(items, *shard)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model": cap.model_name,
            "model_fingerprint": model_fingerprint(model), "prompt": prompt,
            "generation": cap.generation_record(),
            "shard": f"{shard[0]}/{shard[1]}" if shard else None}
    stats = CaptionStats(items=len(items))
    with locked_records(out, what="another caption job is writing this file",
                        log=log) as records:
        _check_resumable(out, records, meta)
        best = keep_records(out, records, retry_failed)
        retried = len({r["id"] for r in records} - set(best))  # failed ones, dropped
        if retried:
            log(f"{out}: retrying {retried} failed item(s)")
        write_meta(out, meta)
        wanted = {it.id for it in items}
        stats.previously_succeeded = sum(1 for k, r in best.items()
                                         if k in wanted and not r.get("error"))
        todo = [it for it in items if it.id not in best]
        stats.skipped = len(items) - len(todo)
        if stats.skipped:
            log(f"{out}: {stats.skipped} of {len(items)} item(s) already done, "
                f"{len(todo)} to go")
        bar = _progress(len(todo), progress)
        try:
            with RecordWriter(out) as writer:
                cap.run(todo, _RecordSink(writer, stats, bar))
        finally:
            if bar is not None:
                bar.close()
    stats.wall_s = time.time() - t0
    return stats


def job_inputs(inputs: list[str], out: Path, log: Callable[[str], None],
               also_exclude: Sequence[str | os.PathLike] = ()) -> list[CaptionItem]:
    """The items to caption: ``resolve_inputs`` less the job's own files; notes (hidden
    files skipped, unreadable folders) go to ``log``.

    Raises:
        DataError: as ``resolve_inputs``.
    """
    notes: list[str] = []
    items = resolve_inputs(inputs, notes)
    own = {os.path.abspath(p) for p in (out, meta_path(out), Path(str(out) + ".lock"),
                                        *also_exclude)}
    kept = [it for it in items if os.path.abspath(it.path) not in own]
    if len(kept) < len(items):
        notes.append(f"left out {len(items) - len(kept)} input(s) that are this job's own "
                     f"output files ({out} and the files beside it)")
    for note in notes:
        log(note)
    if not kept:
        raise DataError(f"{', '.join(map(str, inputs))}: nothing to caption but this job's "
                        "own output files")
    return kept


def _progress(total: int, enabled: bool | None) -> Any:
    if enabled is False or total == 0:
        return None
    from tqdm.auto import tqdm

    # enabled=None: show the bar only on a terminal (logs and CI stay clean).
    return tqdm(total=total, unit="track", desc="captioning", dynamic_ncols=True,
                disable=None if enabled is None else False, smoothing=0.1)
