"""Training configs: a YAML with ``model:`` (a ModelConfig), ``data:``, ``train:`` and
``stages:``, loaded with the same strict typing and dotted overrides as model configs.

Stages and data sources are mappings (name -> settings), not lists, so every value can be
overridden from the command line: ``stages.adapter.steps=50``, ``data.train.qa.weight=2``.
A training YAML builds on presets like any config (``preset:``, see ``mullm.config_files``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mullm.config import (
    ModelConfig,
    apply_overrides,
    checked_from_dict,
    compose,
    read_config,
    to_dict,
    validate_model_config,
)
from mullm.errors import ConfigError

KNOWN_GROUP_PREFIXES = ("adapter.", "injection.", "lora", "llm", "output")


@dataclass
class SourceConfig:
    """One conversation JSONL and how much of the mix it takes."""

    path: str = ""
    weight: float = 1.0
    split: str | None = None
    tasks: list[str] | None = None
    max_samples: int | None = None


@dataclass
class DataConfig:
    """Training and evaluation data: named sources mixed by weight."""

    train: dict[str, SourceConfig] = field(default_factory=dict)
    eval: dict[str, SourceConfig] = field(default_factory=dict)
    max_length: int = 512
    group_by_length: bool = True
    num_workers: int = 0
    skip_bad: bool = False
    # A feature cache folder (``mullm extract``); clips found there skip the encoder.
    feature_cache: str | None = None


@dataclass
class StageConfig:
    """One training stage: what trains, for how long, at which learning rates, on what mix."""

    trainable: list[str] = field(default_factory=lambda: ["adapter.*", "injection.*", "lora"])
    steps: int = 100
    lr: float = 1e-4
    # Per-group learning rates, e.g. {"adapter.audio": 1e-3, "lora": 2e-4}; others use lr.
    lr_groups: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    # Source name -> weight for this stage (0 leaves a source out); None keeps data weights.
    mix: dict[str, float] | None = None


@dataclass
class TrainSettings:
    """Loop settings shared by all stages."""

    batch_size: int = 8
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_batches: int = 4
    eval_samples: int = 2
    eval_max_new_tokens: int = 32
    save_every: int | None = None
    keep_checkpoints: int | None = None
    progress: bool = True
    tensorboard: bool = True
    wandb: str | None = None
    plot: bool = True
    distributed: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    # Stop after this many optimiser steps in this process (tests use it to cut a run short).
    max_steps: int | None = None
    # Adapters with input_norm: standardize fit their statistics on the frames of this many
    # training clips before the first step (not on resume: the checkpoint has them).
    input_norm_clips: int = 512


@dataclass
class TrainConfig:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    stages: dict[str, StageConfig] = field(default_factory=lambda: {"main": StageConfig()})
    output_dir: str = "runs/run"


def validate_train_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train, before anything heavy is built."""
    validate_model_config(cfg.model)
    t = cfg.train
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size={t.batch_size} must be >= 1")
    if t.grad_accum < 1:
        raise ConfigError(f"train.grad_accum={t.grad_accum} must be >= 1")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise ConfigError(f"train.max_grad_norm={t.max_grad_norm} must be > 0 or null")
    for key in ("log_every", "eval_every", "save_every", "keep_checkpoints"):
        v = getattr(t, key)
        if v is not None and v < 1:
            raise ConfigError(f"train.{key}={v} must be >= 1 (or null to turn it off)")
    if not cfg.stages:
        raise ConfigError("stages: at least one stage is needed")
    if not cfg.data.train:
        raise ConfigError("data.train: no training source; give at least one "
                          "{name: {path: conversations.jsonl}}")
    for name, src in {**cfg.data.train, **cfg.data.eval}.items():
        if not src.path:
            raise ConfigError(f"data source {name!r}: path is empty")
        if src.weight < 0:
            raise ConfigError(f"data source {name!r}: weight={src.weight} must be >= 0")
    if cfg.data.max_length < 8:
        raise ConfigError(f"data.max_length={cfg.data.max_length} is too small")
    for name, st in cfg.stages.items():
        key = f"stages.{name}"
        if st.steps < 1:
            raise ConfigError(f"{key}.steps={st.steps} must be >= 1")
        if st.lr <= 0:
            raise ConfigError(f"{key}.lr={st.lr} must be > 0")
        if not st.trainable:
            raise ConfigError(f"{key}.trainable is empty: the stage would train nothing")
        for pat in st.trainable:
            if not pat.startswith(KNOWN_GROUP_PREFIXES):
                raise ConfigError(
                    f"{key}.trainable: {pat!r} is not a parameter group; groups look like "
                    f"'adapter.audio', 'adapter.*', 'injection.audio', 'lora', 'llm'"
                )
        if not 0 <= st.min_lr_ratio <= 1:
            raise ConfigError(f"{key}.min_lr_ratio={st.min_lr_ratio} must be in [0, 1]")
        if st.warmup_steps < 0 or st.warmup_steps > st.steps:
            raise ConfigError(f"{key}.warmup_steps={st.warmup_steps} must be in [0, steps]")
        if st.mix is not None:
            unknown = sorted(set(st.mix) - set(cfg.data.train))
            if unknown:
                raise ConfigError(f"{key}.mix names unknown sources {unknown}; data.train has "
                                  f"{sorted(cfg.data.train)}")
            if not any(w > 0 for w in st.mix.values()):
                raise ConfigError(f"{key}.mix gives every source weight 0")
    if not any(s.weight > 0 for s in cfg.data.train.values()):
        raise ConfigError("data.train: every source has weight 0")


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make data paths relative to the config file absolute (cwd-independent runs)."""
    sections = data.get("data")
    for section in ("train", "eval"):
        sources = sections.get(section) if isinstance(sections, dict) else None
        for src in sources.values() if isinstance(sources, dict) else []:
            if isinstance(src, dict) and isinstance(src.get("path"), str):
                p = Path(src["path"]).expanduser()
                if not p.is_absolute() and not p.exists() and (base / p).exists():
                    src["path"] = str(base / p)


def load_train_config(source: str | Path | dict[str, Any],
                      overrides: list[str] | None = None) -> TrainConfig:
    """Load a training config, apply dotted overrides, expand its presets, and validate it.

    ``source`` is a YAML path, a shipped config's name (``quickstart``,
    ``projects/llark/train``) or raw data, which is never changed.
    """
    if isinstance(source, dict):
        data, where = copy.deepcopy(source), "<dict>"
    else:
        data, path = read_config(source)
        where = str(path)
        _resolve_paths(data, path.resolve().parent)  # the paths this file states
    data = compose(apply_overrides(data, overrides or [], TrainConfig), where)
    return checked_from_dict(TrainConfig, data, where, validate_train_config)


def resume_fingerprint(cfg: TrainConfig) -> dict[str, str]:
    """Hashes of the parts a resumed run must share with the run it continues."""
    d = to_dict(cfg)
    parts = {
        "model": d["model"],
        "data": {k: v for k, v in d["data"].items() if k != "num_workers"},
        "stages": d["stages"],
        # batch_size and grad_accum are not here: a resume may change them with the number
        # of processes as long as the global batch stays (checked from trainer_state.json).
        "batch": {k: d["train"][k] for k in ("seed", "max_grad_norm", "precision")},
    }
    return {k: hashlib.sha256(yaml.safe_dump(v, sort_keys=True).encode()).hexdigest()[:16]
            for k, v in parts.items()}


def dump_train_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML (written into the run folder)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
