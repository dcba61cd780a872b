"""Training checkpoints: a model directory plus what an exact resume needs.

``OUT/checkpoint-000120/`` holds ``model.save_pretrained`` output (so it is a valid
``--model``), ``trainer_state.json`` (step, stage, data position, global batch, config
fingerprint), ``optimizer/`` (the optimizer's tensors as a ``torch.distributed.checkpoint``
of safetensors shards), ``optimizer.json`` (parameter groups, scheduler and grad-scaler
state) and ``rng.rank{r}.pt`` (python, numpy, torch and CUDA generator states).

The optimizer state goes through DCP (``get_optimizer_state_dict`` names each tensor by its
parameter, DCP records which slice each process holds), so a run saved by N processes, FSDP
shards or DDP replicas, resumes on M processes: DCP reads each process's slice back from
whatever shards hold it. It is written with DCP's Hugging Face storage (safetensors files
whose headers carry the slice offsets), so no file of a checkpoint is a pickle: the RNG
files are read with ``torch.load(weights_only=True)``, everything else is JSON or
safetensors.

A checkpoint is written into ``checkpoint-N.tmp`` and renamed into place only when complete,
so a process killed mid-save never leaves a checkpoint that looks valid but is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.errors import MullmError

STATE_FILE = "trainer_state.json"
PREFIX = "checkpoint-"
OPTIMIZER_DIR = "optimizer"
OPTIMIZER_META = "optimizer.json"
# 2: optimizer state through torch.distributed.checkpoint, global batch in the state file.
FORMAT = 2


class ResumeError(MullmError, ValueError):
    """A resume directory that cannot continue this run."""


def rng_state() -> dict[str, Any]:
    """Every random generator's state, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint at ``step``."""
    return f"{PREFIX}{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and not p.name.endswith(".tmp") and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def resolve_resume(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its latest checkpoint)."""
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    found = list_checkpoints(p)
    if not found:
        raise ResumeError(f"--resume {p}: neither a checkpoint (no {STATE_FILE}) nor a run "
                          f"folder with {PREFIX}* checkpoints")
    return found[-1]


def tmp_dir(run_dir: Path, step: int) -> Path:
    """The staging folder every rank writes its part of checkpoint ``step`` into."""
    return run_dir / (checkpoint_name(step) + ".tmp")


def save_optimizer(staging: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any, scaler: Any | None, is_main: bool) -> None:
    """Write the optimizer's tensors as a DCP checkpoint under ``staging/optimizer`` and the
    parameter groups, scheduler and grad-scaler state as ``optimizer.json`` (rank 0).

    Every process must call it (DCP plans the save collectively). ``model`` is the unwrapped
    model whose parameters the optimizer holds (sharded in place under FSDP).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer)
    with _quiet_single_process() as no_dist:
        dcp.save(_flatten(osd["state"]), storage_writer=HuggingFaceStorageWriter(
            str(staging / OPTIMIZER_DIR), save_distributed=True), no_dist=no_dist)
    if is_main:
        meta = {"param_groups": osd["param_groups"], "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None}
        (staging / OPTIMIZER_META).write_text(json.dumps(meta, indent=1))


def load_optimizer(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any, scaler: Any | None) -> None:
    """Restore what ``save_optimizer`` wrote into a fresh optimizer, scheduler and scaler,
    whatever the number of processes (or their sharding) that saved it.

    Raises:
        ResumeError: a file is missing, or the checkpoint holds optimizer state for other
            parameters than this stage trains.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    folder, meta_path = ckpt / OPTIMIZER_DIR, ckpt / OPTIMIZER_META
    for p in (folder, meta_path):
        if not p.exists():
            raise ResumeError(f"{ckpt}: {p.name} is missing; not a complete checkpoint")
    meta = json.loads(meta_path.read_text())
    reader = HuggingFaceStorageReader(str(folder))
    saved = set(reader.read_metadata().state_dict_metadata)
    # This process's layout (and a zero-lr step that creates the state tensors to fill).
    osd = get_optimizer_state_dict(model, optimizer)
    wanted = _flatten(osd["state"])
    extra = sorted(saved - set(wanted))
    if extra:
        raise ResumeError(f"{ckpt}: optimizer state for {len(extra)} tensor(s) this stage does "
                          f"not train, e.g. {extra[:3]}; resume with the config that wrote it")
    # Parameters that had no gradient yet have no state in the checkpoint: leave them so.
    wanted = {k: v for k, v in wanted.items() if k in saved}
    with _quiet_single_process() as no_dist:
        dcp.load(wanted, storage_reader=reader, no_dist=no_dist)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g
              for g in meta["param_groups"]]
    set_optimizer_state_dict(model, optimizer,
                             {"state": _unflatten(wanted), "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler") is not None:
        scaler.load_state_dict(meta["scaler"])


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[bool]:
    """Yield True without a process group (DCP then reads or writes alone) and silence the
    warning DCP gives on every such call: one process is the intent there, not a mistake."""
    import torch.distributed as dist

    single = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():
        if single:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield single


def _flatten(state: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
    """{param FQN: {name: tensor}} -> {"FQN.name": tensor}; refuses non-tensor state."""
    out = {}
    for fqn, entries in state.items():
        for name, value in entries.items():
            if not torch.is_tensor(value):
                raise TypeError(f"optimizer state {fqn}.{name} is a {type(value).__name__}; "
                                f"only tensors are checkpointed (AdamW keeps only tensors)")
            out[f"{fqn}.{name}"] = value
    return out


def _unflatten(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Inverse of ``_flatten`` (state names such as ``exp_avg`` hold no dot)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        fqn, name = key.rsplit(".", 1)
        out.setdefault(fqn, {})[name] = value
    return out


def save_rng(staging: Path, rank: int) -> None:
    """Write this process's RNG states as ``rng.rank{rank}.pt``."""
    staging.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), staging / f"rng.rank{rank}.pt")


def finalize(staging: Path, state: dict[str, Any], keep: int | None) -> Path:
    """Write trainer_state.json, move the staging folder into place, prune old ones."""
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
    final = staging.with_name(staging.name[: -len(".tmp")])
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    (final.parent / "latest_checkpoint").write_text(final.name + "\n")
    if keep is not None:
        for old in list_checkpoints(final.parent)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    """trainer_state.json of a checkpoint."""
    return json.loads((ckpt / STATE_FILE).read_text())


def load_rng(ckpt: Path, rank: int) -> dict[str, Any]:
    """The RNG states rank ``rank`` saved (weights_only=True). A process beyond those that
    saved (a resume on more processes) takes rank 0's, as every rank of a new run starts
    from the same seed."""
    path = ckpt / f"rng.rank{rank}.pt"
    if not path.is_file():
        path = ckpt / "rng.rank0.pt"
    if not path.is_file():
        raise ResumeError(f"{ckpt}: {path.name} is missing; not a complete checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


def check_compatible(ckpt: Path, state: dict[str, Any], fingerprint: dict[str, str],
                     global_batch: int) -> None:
    """Refuse a checkpoint from an older layout, another config or another global batch.

    The number of processes may change: the batch order depends only on the global batch
    (``batch_size * grad_accum * processes``), so keep that product (raise grad_accum when
    resuming on fewer processes).
    """
    if state.get("format", 1) < FORMAT:
        raise ResumeError(
            f"--resume {ckpt}: written by an older mullm (per-process optimizer.rank*.pt "
            f"files); this version reads optimizer state with torch.distributed.checkpoint. "
            f"Resume it with the mullm that wrote it, or start a new output_dir"
        )
    theirs = state.get("fingerprint", {})
    diff = sorted(k for k in fingerprint if theirs.get(k) != fingerprint[k])
    if diff:
        raise ResumeError(
            f"--resume {ckpt}: that run used a different config ({', '.join(diff)} section(s) "
            f"differ); compare {ckpt.parent / 'config.yaml'} with this config, or start a "
            f"new output_dir"
        )
    if state["global_batch"] != global_batch:
        raise ResumeError(
            f"--resume {ckpt}: saved with a global batch of {state['global_batch']} "
            f"(batch_size x grad_accum x {state['world_size']} process(es)), resumed with "
            f"{global_batch}; the data order depends on it: keep batch_size x grad_accum x "
            f"processes equal (e.g. a larger grad_accum on fewer processes)"
        )
