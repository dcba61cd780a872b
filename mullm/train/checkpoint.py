"""Training checkpoints: a model directory plus what an exact resume needs.

``OUT/checkpoint-000120/`` holds ``model.save_pretrained`` output (so it is a valid
``--model``), ``trainer_state.json`` (step, stage, data position, config fingerprint),
``optimizer.rank{r}.pt`` (optimizer, scheduler and grad-scaler state) and ``rng.rank{r}.pt``
(python, numpy, torch and CUDA generator states). Tensors are saved with ``torch.save`` and
read back with ``weights_only=True``: no pickled code runs on load.

A checkpoint is written into ``checkpoint-N.tmp`` and renamed into place only when complete,
so a process killed mid-save never leaves a checkpoint that looks valid but is not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.errors import MullmError

STATE_FILE = "trainer_state.json"
PREFIX = "checkpoint-"


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


def save_rank_state(staging: Path, rank: int, optimizer_state: dict[str, Any],
                    scheduler: Any, scaler: Any | None) -> None:
    """Write this rank's optimizer state (plain tensors), scheduler/scaler and RNG states."""
    staging.mkdir(parents=True, exist_ok=True)
    opt = {"optimizer": optimizer_state, "scheduler": scheduler.state_dict()}
    if scaler is not None:
        opt["scaler"] = scaler.state_dict()
    torch.save(opt, staging / f"optimizer.rank{rank}.pt")
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


def load_rank_state(ckpt: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimizer bundle, rng state) of one rank, loaded with weights_only=True."""
    opt_path, rng_path = ckpt / f"optimizer.rank{rank}.pt", ckpt / f"rng.rank{rank}.pt"
    for p in (opt_path, rng_path):
        if not p.is_file():
            raise ResumeError(f"{ckpt}: {p.name} is missing (was it written by a run with "
                              f"another number of processes?)")
    opt = torch.load(opt_path, map_location="cpu", weights_only=True)
    rng = torch.load(rng_path, map_location="cpu", weights_only=True)
    return opt, rng


def check_compatible(ckpt: Path, state: dict[str, Any], fingerprint: dict[str, str],
                     world_size: int) -> None:
    """Refuse a checkpoint from another config or another number of processes."""
    theirs = state.get("fingerprint", {})
    diff = sorted(k for k in fingerprint if theirs.get(k) != fingerprint[k])
    if diff:
        raise ResumeError(
            f"--resume {ckpt}: that run used a different config ({', '.join(diff)} section(s) "
            f"differ); compare {ckpt.parent / 'config.yaml'} with this config, or start a "
            f"new output_dir"
        )
    if state.get("world_size", 1) != world_size:
        raise ResumeError(
            f"--resume {ckpt}: saved with {state.get('world_size')} process(es), resumed with "
            f"{world_size}; the data order depends on it, so use the same count"
        )
