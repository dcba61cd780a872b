"""Batch captioning: many audio files -> one JSONL record each, resumable and shardable.

The job (``mullm caption``, ``tools/caption.py``) and the Python API (``caption_files``)
share one engine, ``Captioner``, built on the windowed batching engine that feature
extraction uses too (``mullm.utils.batching``). Modules:

- ``settings``: prompts, ``CaptionSettings`` (a ``transformers.GenerationConfig`` plus the
  job's window, hop, summary mode and seed), ``CaptionJobError``;
- ``inputs``: files / folders / globs / manifests / HF ``datasets`` folders -> items, and
  stable shards of them;
- ``records``: the durable output file (one fsynced line per record, partial-tail repair,
  atomic rewrites) and its settings sidecar;
- ``engine``: ``Captioner`` (segment captions batched across tracks, then whole-track
  summaries in rounds);
- ``job``: ``run_caption_job`` (lock, resume, retry failed, the summary table);
- ``merge``: ``merge_shards``; ``api``: ``caption_files``.

The output file is written so that SIGKILL at any moment loses at most the batch in flight;
a resume with another model or other settings is refused (see docs/captioning.md).
"""

from mullm.caption.api import caption_files
from mullm.caption.engine import Captioner
from mullm.caption.inputs import CaptionItem, parse_shard, resolve_inputs, select_shard, shard_of
from mullm.caption.job import CaptionStats, model_fingerprint, run_caption_job
from mullm.caption.merge import merge_shards
from mullm.caption.records import (
    RecordWriter,
    meta_path,
    read_meta,
    read_records,
    repair_tail,
    rewrite_records,
)
from mullm.caption.settings import (
    DEFAULT_PROMPT,
    SUMMARY_PROMPT,
    CaptionJobError,
    CaptionSettings,
    generation_config,
)

__all__ = [
    "DEFAULT_PROMPT", "SUMMARY_PROMPT", "CaptionItem", "CaptionJobError", "CaptionSettings",
    "CaptionStats", "Captioner", "RecordWriter", "caption_files", "generation_config",
    "merge_shards", "meta_path", "model_fingerprint", "parse_shard", "read_meta",
    "read_records", "repair_tail", "resolve_inputs", "rewrite_records", "run_caption_job",
    "select_shard", "shard_of",
]
