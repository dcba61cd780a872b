"""Captioning over processes: ``torchrun --nproc_per_node N -m mullm.cli caption ...``.

torchrun starts N copies of the command and tells each its rank (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). Each process:

1. takes the inputs of its shard, the same split as ``--shard RANK/WORLD_SIZE`` (a stable
   hash of each id), so a run over processes and a run over machines agree;
2. runs its own model on its own device (``cuda:LOCAL_RANK``, or on a CPU-only host a
   1/LOCAL_WORLD_SIZE share of the cores) and writes its own resumable shard file,
   ``OUT.shard-RANK-of-N.jsonl`` beside ``OUT`` (one writer per file: nothing is shared);
3. waits at a barrier (gloo, a timeout of days: shards finish at different times) until
   every process is done; then rank 0 merges the shard files into ``OUT``
   (``merge_shards``: same settings, no duplicate ids, no missing shard).

A killed process makes torchrun stop the others; running the same command again resumes
every shard file where it stopped and merges when all are complete. The shard files are
kept (they are the resume state); ``OUT`` can be rebuilt from them at any time with
``mullm caption-merge``. Many machines: a SLURM array of ``--shard i/n`` jobs and one
``caption-merge`` (docs/captioning.md).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.caption.job import CaptionStats, run_caption_job
from mullm.caption.merge import merge_shards
from mullm.caption.records import meta_path, read_meta
from mullm.caption.settings import CaptionJobError
from mullm.utils.locks import exclusive_lock

if TYPE_CHECKING:
    from mullm.model import MusicLLM

# A barrier waits for the slowest shard, which may take hours longer than the fastest.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch."""

    rank: int
    world: int
    local_rank: int
    local_world: int


def torchrun_launch(environ: dict[str, str] | None = None) -> Launch | None:
    """The launch torchrun describes in the environment, or None for a single process.

    Raises:
        CaptionJobError: the variables are inconsistent (naming them).
    """
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    try:
        launch = Launch(int(env["RANK"]), world, int(env.get("LOCAL_RANK", env["RANK"])),
                        int(env.get("LOCAL_WORLD_SIZE", world)))
    except (KeyError, ValueError):
        raise CaptionJobError(f"WORLD_SIZE={world} but RANK is missing or not a number; "
                              "start several processes with torchrun") from None
    if not 0 <= launch.rank < world:
        raise CaptionJobError(f"RANK={launch.rank} is outside 0..{world - 1}")
    return launch


def shard_file(out: str | os.PathLike, rank: int, world: int) -> Path:
    """``captions.jsonl`` -> ``captions.shard-0-of-2.jsonl`` (beside it)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{rank}-of-{world}{out.suffix}")


def device_for(launch: Launch, requested: str = "auto") -> str:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is there (``auto``/``cuda``),
    else the CPU, with the host's cores shared between its processes (torchrun sets one
    thread per process; captioning on a CPU wants the cores).

    Raises:
        CaptionJobError: an explicit ``cuda:K`` device, or more processes than GPUs.
    """
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise CaptionJobError(f"--device {requested}: under torchrun each process picks its "
                              "own device; use auto, cuda or cpu")
    if requested != "cpu" and torch.cuda.is_available():
        if launch.local_rank >= torch.cuda.device_count():
            raise CaptionJobError(f"LOCAL_RANK={launch.local_rank} but this host has "
                                  f"{torch.cuda.device_count()} GPU(s); start at most one "
                                  "process per GPU (--nproc_per_node)")
        torch.cuda.set_device(launch.local_rank)
        return f"cuda:{launch.local_rank}"
    if requested == "cuda":
        raise CaptionJobError("--device cuda but CUDA is not available")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // max(1, launch.local_world)))
    return "cpu"


def _check_outputs(out: Path, launch: Launch) -> list[Path]:
    """This launch's shard files; refuse a mix with another launch's files."""
    shards = [shard_file(out, r, launch.world) for r in range(launch.world)]
    pattern = re.compile(re.escape(out.stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(out.suffix)
                         + "$")
    folder = out.parent if str(out.parent) else Path(".")
    others = sorted(p.name for p in folder.glob(f"{out.stem}.shard-*-of-*{out.suffix}")
                    if (m := pattern.match(p.name)) and int(m.group(2)) != launch.world)
    if others:
        raise CaptionJobError(
            f"{out}: shard files of another process count exist ({', '.join(others[:4])}); "
            f"resume with the same --nproc_per_node, or merge them with caption-merge and "
            "choose another --out")
    if out.is_file() and out.stat().st_size and meta_path(out).is_file():
        # Names, not paths: a resume may name --out from another folder.
        merged = read_meta(out).get("merged_from") or []
        if sorted(Path(m).name for m in merged) != sorted(p.name for p in shards):
            raise CaptionJobError(
                f"{out} exists and was not merged from this launch's shard files; resume it "
                "with the command that wrote it, or choose another --out")
    elif out.is_file() and out.stat().st_size:
        raise CaptionJobError(f"{out} exists without its settings file; choose another --out")
    return shards


def _own_files(out: Path, shards: list[Path]) -> list[Path]:
    files = [out, meta_path(out), Path(str(out) + ".lock")]
    for s in shards:
        files += [s, meta_path(s), Path(str(s) + ".lock")]
    return files


@dataclass
class DistributedResult:
    """This process's shard counts and, on rank 0, the merge summary."""

    stats: CaptionStats
    shard_out: Path
    merged: dict[str, Any] | None = None


def caption_over_processes(load_model: Callable[[str], MusicLLM], inputs: list[str],
                           out: str | os.PathLike, launch: Launch, device: str = "auto",
                           log: Callable[[str], None] | None = None,
                           **job: Any) -> DistributedResult:
    """Caption this process's shard of ``inputs`` into its shard file; on rank 0, merge
    all shards into ``out`` once every process is done.

    ``load_model(device)`` builds the model (after the cheap checks, so a usage error
    costs no model load); ``job`` holds ``run_caption_job``'s settings (prompt,
    batch_size, settings, retry_failed, model_name, progress).

    Raises:
        CaptionJobError: a ``shard`` in ``job``, shard files of another process count, or
            an ``out`` this launch did not write; anything ``run_caption_job`` raises.
        RuntimeError: the process group cannot form (torch.distributed).
    """
    import torch.distributed as dist

    if job.pop("shard", None) is not None:
        raise CaptionJobError("--shard and torchrun both split the inputs; use one of them")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out)
    shards = _check_outputs(out, launch)
    mine = shards[launch.rank]
    device = device_for(launch, device)
    started_group = not dist.is_initialized()
    if started_group:
        # gloo even beside GPUs: the group only carries the final barrier.
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        model = load_model(device)
        stats = run_caption_job(model, inputs, mine, shard=(launch.rank, launch.world),
                                exclude=_own_files(out, shards), log=log, **job)
        log(f"rank {launch.rank} of {launch.world} ({device}): {mine} done; waiting for the "
            "other processes")
        dist.barrier()
        merged = None
        if launch.rank == 0:
            with exclusive_lock(Path(str(out) + ".lock"),
                                what=f"{out}: another caption job is writing this file",
                                remedy="wait for it or use another --out"):
                merged = merge_shards(out, [str(s) for s in shards])
        return DistributedResult(stats, mine, merged)
    finally:
        if started_group and dist.is_initialized():
            dist.destroy_process_group()
