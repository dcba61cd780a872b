"""The resumable evaluation job behind ``mullm eval``: items -> durable records -> report.

``OUT/records.jsonl`` gets one record per item, appended durably as the item completes
(one ``os.write`` + ``fsync``, as caption files: ``mullm.caption.records``); a killed run
is resumed by running the same command again: a partial last line is cut away, items with a
record are skipped (failed ones too, unless ``retry_failed``), so each item is recorded
exactly once. ``records.jsonl.meta.json`` holds the model fingerprint and the settings; a
resume with another model, data file or settings is refused, listing the differences.
``OUT/records.jsonl.lock`` keeps a second job out. At the end the report (``report.json``,
``report.md``, plots) is written from every record of the run's items.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.caption.records import describe_diff, read_meta, settings_key, write_meta
from mullm.utils.records import RecordWriter, keep_records, locked_records

if TYPE_CHECKING:
    from mullm.model import MusicLLM

TASKS = ("mcq", "caption", "qa", "mir")
FORMAT = "mullm.eval/1"


class EvalJobError(ValueError):
    """A run that cannot resume into its output folder (other model or settings)."""


@dataclass
class EvalOptions:
    """Settings of one evaluation run (the CLI's flags)."""

    task: str
    data: str
    fmt: str | None = None  # multiple-choice file format (None: detected)
    audio_template: str | None = None
    prompt: str | None = None  # pinned prompt name (None: the format's default)
    conditions: tuple[str, ...] | None = None  # None: all four for mcq, audio otherwise
    scorers: tuple[str, ...] = ("logprob", "generate")
    seed: int = 0
    batch_size: int = 16
    max_new_tokens: int | None = None
    max_items: int | None = None
    split: str | None = None
    folds: int | None = None  # RUListening: items per question (one distractor dropped)
    legacy: tuple[str, ...] = ()
    bertscore_model: str | None = None
    retry_failed: bool = False


def load_items(opts: EvalOptions) -> list[Any]:
    """The run's items, read and checked before any model loads.

    Raises:
        DataError: a malformed file (``file:line`` and the field), a refused item.
        FileNotFoundError: the data file is missing.
        ValueError: an unknown task.
    """
    if opts.task not in TASKS:
        raise ValueError(f"task {opts.task!r}: choose one of {list(TASKS)}")
    if opts.task == "mcq":
        from mullm.eval.mcq_items import detect_format, expand_folds, read_mcq

        fmt = opts.fmt or detect_format(opts.data)
        items = read_mcq(opts.data, fmt, audio_template=opts.audio_template)
        folds = opts.folds if opts.folds is not None else (4 if fmt == "rulistening" else 0)
        if folds:
            items = expand_folds(items, folds)
        return items[:opts.max_items] if opts.max_items else items
    from mullm.eval.generation import read_generation_items

    return read_generation_items(opts.data, opts.task, split=opts.split,
                                 max_items=opts.max_items)


def build_task(model: MusicLLM, opts: EvalOptions, items: list[Any]) -> Any:
    """The ``EvalTask`` of ``opts`` for ``items``."""
    if opts.task == "mcq":
        from mullm.eval.mcq import CONDITIONS, MCQTask
        from mullm.eval.mcq_items import detect_format
        from mullm.eval.prompts import DEFAULT_PROMPT

        prompt = opts.prompt or DEFAULT_PROMPT[opts.fmt or detect_format(opts.data)]
        return MCQTask(model, items, prompt=prompt, conditions=opts.conditions or CONDITIONS,
                       scorers=opts.scorers, seed=opts.seed,
                       max_new_tokens=opts.max_new_tokens)
    from mullm.eval.generation import GenerationTask

    return GenerationTask(model, items, opts.task, conditions=opts.conditions or ("audio",),
                          max_new_tokens=opts.max_new_tokens or 64, seed=opts.seed)


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def summarize(task: Any, records: list[dict[str, Any]], opts: EvalOptions) -> dict[str, Any]:
    """The run's summary from its records (the report's content)."""
    if opts.task == "mcq":
        from mullm.eval.mcq import summarize_mcq

        return summarize_mcq(records, task.settings())
    from mullm.eval.generation import summarize_generation

    return summarize_generation(records, task.settings(), legacy=opts.legacy,
                                bertscore_model=opts.bertscore_model)


def run_eval_job(model: MusicLLM, opts: EvalOptions, out_dir: str | os.PathLike,
                 items: list[Any] | None = None, model_name: str | None = None,
                 progress: bool | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` as ``opts`` says into ``out_dir`` (resuming it); returns the
    summary (also written as ``report.json`` / ``report.md`` with plots).

    Raises:
        EvalJobError: ``out_dir`` holds records of another model, data file or settings.
        LockedError: another job is writing ``out_dir``.
        DataError: bad data (before anything runs) or a damaged records file.
    """
    from mullm.eval.engine import run_task
    from mullm.eval.report import write_report
    from mullm.model_io import model_fingerprint

    log = log or (lambda msg: print(msg, file=sys.stderr))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = items if items is not None else load_items(opts)
    task = build_task(model, opts, items)
    out = out_dir / "records.jsonl"
    settings = {**task.settings(), "data": str(opts.data), "data_sha256": _file_hash(opts.data),
                "max_items": opts.max_items, "folds": opts.folds}
    meta = {"format": FORMAT, "model": model_name, "model_fingerprint": model_fingerprint(model),
            "prompt": None, "generation": settings, "shard": None}
    t0 = time.time()
    was = model.training
    model.eval()
    with locked_records(out, what="another evaluation job is writing this folder",
                        log=log) as records:
        if records:
            old = read_meta(out)
            if settings_key(old) != settings_key(meta):
                raise EvalJobError(f"{out_dir} holds records of another model, data or "
                                   f"settings ({describe_diff(old, meta)}); rerun with the "
                                   "same ones to resume, or use another --out")
        best = keep_records(out, records, opts.retry_failed)
        write_meta(out, meta)
        todo = [it for it in items if task.item_id(it) not in best]
        if len(todo) < len(items):
            log(f"{out}: {len(items) - len(todo)} of {len(items)} item(s) already recorded, "
                f"{len(todo)} to go")
        bar = _progress(len(todo), progress, opts.task)
        try:
            with RecordWriter(out) as writer:
                def sink(rec: dict[str, Any]) -> None:
                    writer.write(rec)
                    best[rec["id"]] = rec
                    if bar is not None:
                        bar.update(1)
                run_task(task, todo, sink, batch_size=opts.batch_size)
        finally:
            model.train(was)
            if bar is not None:
                bar.close()
    wanted = [task.item_id(it) for it in items]
    summary = summarize(task, [best[i] for i in wanted if i in best], opts)
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["model"] = model_name
    write_report(summary, out_dir)
    return summary


def _progress(total: int, enabled: bool | None, task: str) -> Any:
    if enabled is False or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="item", desc=f"eval {task}", dynamic_ncols=True,
                disable=None if enabled is None else False, smoothing=0.1)


__all__ = ["EvalJobError", "EvalOptions", "TASKS", "build_task", "load_items",
           "run_eval_job", "summarize"]
