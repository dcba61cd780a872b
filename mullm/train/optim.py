"""What a training stage optimises: its parameter groups (checked, then the only ones
unfrozen), AdamW with per-group learning rates, the warmup-cosine schedule (transformers'),
the autocast precision, and the housekeeping of a run folder."""

from __future__ import annotations

import contextlib
import fnmatch
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mullm.errors import ConfigError
from mullm.train.config import StageConfig


def select_groups(groups: dict[str, list[nn.Parameter]], patterns: list[str], stage: str
                  ) -> dict[str, list[nn.Parameter]]:
    """The parameter groups a stage trains; every pattern must match a non-empty group."""
    chosen: dict[str, list[nn.Parameter]] = {}
    for pat in patterns:
        hits = [g for g in groups if fnmatch.fnmatchcase(g, pat)]
        # "adapter.*"-style wildcards may legitimately match nothing (no injector, say).
        if not hits and not any(ch in pat for ch in "*?["):
            raise ConfigError(
                f"stages.{stage}.trainable: {pat!r} is not a group of this model; it has "
                f"{sorted(groups)} (LoRA exists only with llm.policy=lora, 'llm' only with "
                f"llm.policy=full)"
            )
        for g in hits:
            chosen[g] = groups[g]
    n = sum(p.numel() for ps in chosen.values() for p in ps)
    if n == 0:
        raise ConfigError(
            f"stages.{stage}: trainable={patterns} selects no parameters (the model's groups "
            f"are {sorted(k for k, v in groups.items() if v)}); the stage would train nothing"
        )
    return chosen


def set_trainable(model: nn.Module, chosen: dict[str, list[nn.Parameter]]) -> int:
    """Freeze everything, unfreeze the chosen groups; return the trainable count."""
    for p in model.parameters():
        p.requires_grad_(False)
    ids = set()
    for ps in chosen.values():
        for p in ps:
            p.requires_grad_(True)
            ids.add(id(p))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = sum(p.numel() for ps in chosen.values() for p in ps if id(p) in ids)
    assert n == expected, (n, expected)  # the policy is explicit: nothing else may train
    return n


def build_optimizer(chosen: dict[str, list[nn.Parameter]], stage: StageConfig
                    ) -> torch.optim.AdamW:
    """AdamW with one parameter group per (model group, decay/no-decay)."""
    param_groups = []
    for name, params in chosen.items():
        lr = stage.lr
        for pat, value in stage.lr_groups.items():
            if fnmatch.fnmatchcase(name, pat):
                lr = value
        # No weight decay on vectors (biases, norms, gates, layer weights), as usual.
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        for ps, wd, tag in ((decay, stage.weight_decay, ""), (no_decay, 0.0, ".no_decay")):
            if ps:
                param_groups.append({"params": ps, "lr": lr, "weight_decay": wd,
                                     "name": name + tag})
    return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8)


def build_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """The stage's LR schedule: transformers' warmup + cosine to ``lr * min_lr_ratio``.

    Per step ``s`` of ``T = stage.steps`` with ``W = stage.warmup_steps``, the multiplier is
    ``(s + 1) / W`` while ``s < W`` (the first step already learns), then the half cosine
    from 1 to ``min_lr_ratio`` with progress ``(s - W + 1) / (T - W)``, so the last step runs
    at exactly the minimum. (mullm's own schedule before used ``(s - W) / (T - W)``: the same
    curve one step later, never reaching the minimum; see docs/training.md.) A LambdaLR, so
    its state dict (the step count) resumes exactly.
    """
    from transformers import get_cosine_with_min_lr_schedule_with_warmup_lr_rate

    return get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
        optimizer, num_warmup_steps=stage.warmup_steps, num_training_steps=stage.steps,
        min_lr_rate=stage.min_lr_ratio)


def autocast_for(precision: str, device: torch.device) -> tuple[Any, torch.dtype | None]:
    """(autocast context factory, dtype) for the precision setting; fp32 on CPU by default."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), dtype


RUN_ARTIFACTS = ("metrics.jsonl", "samples.jsonl", "curves.png", "latest_checkpoint",
                 "model", "tensorboard", "config.yaml", "processor")


def clear_previous_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) an earlier run's files in ``run_dir``.

    A new run appending to an old ``metrics.jsonl`` and rotating old checkpoints would mix two
    runs' curves and weights without a word.
    """
    found = sorted(p.name for p in run_dir.glob("checkpoint-*")) + \
        [n for n in ("metrics.jsonl", "model") if (run_dir / n).exists()]
    if not found:
        return
    if not overwrite:
        raise ConfigError(
            f"output_dir {run_dir} already holds a run ({', '.join(found[:4])}); continue it "
            f"with --resume {run_dir}, choose another output_dir, or pass --overwrite to "
            "delete it")
    # Every process of a torchrun job gets here before the process group exists, so several
    # may delete the same files at once: a file another rank removed first is not an error.
    for p in list(run_dir.glob("checkpoint-*")) + [run_dir / n for n in RUN_ARTIFACTS]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
