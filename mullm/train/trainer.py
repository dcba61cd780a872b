"""The training recipe: read top to bottom — setup, stages (train, evaluate, save), clean up.

One optimiser step = ``grad_accum`` micro-batches on every rank. The loss of a step is the
mean over every labelled token of all those micro-batches on all ranks (each micro-batch's
summed loss is divided by the step's global token count), so two processes at batch B train
exactly like one at batch 2B, and accumulation matches a bigger batch.

Exact resume: the batch order is a pure function of (seed, stage, position); the DataLoader
gets its own generator so creating it never touches the global RNG; every checkpoint stores
the optimizer, scheduler, RNG states and data position.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mullm.config import to_dict
from mullm.data.dataset import (
    Collator,
    ConversationDataset,
    MixtureBatches,
    Source,
    media_specs,
    sequential_batches,
)
from mullm.errors import ConfigError, DataError, MullmError, OutputError
from mullm.outputs.vocab import task_prefixes
from mullm.processor import MusicProcessor
from mullm.train import checkpoint as ckpt
from mullm.train import distributed as D
from mullm.train.config import (
    StageConfig,
    TrainConfig,
    dump_train_config,
    load_train_config,
    resume_fingerprint,
)
from mullm.train.input_norm import fit_input_norms
from mullm.train.metrics import MetricsLogger
from mullm.train.optim import (
    autocast_for,
    build_optimizer,
    build_scheduler,
    clear_previous_run,
    select_groups,
    set_trainable,
)
from mullm.utils.files import check_output_path


class TrainingError(MullmError, RuntimeError):
    """Training cannot go on (a NaN loss, a diverged gradient)."""


# ------------------------------------------------------------------------------ helpers


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    # Music-output targets, when the batch has any: the model adds the projector loss.
    return {"input_ids": batch["input_ids"].to(device),
            "attention_mask": batch["attention_mask"].to(device),
            "labels": batch["labels"].to(device),
            "media": {k: v.to(device) for k, v in batch["media"].items()},
            **({"music_captions": batch["music_captions"]} if "music_captions" in batch else {})}


def _new_window() -> dict[str, Any]:
    """Running sums between two log records."""
    return {"loss": 0.0, "tokens": 0, "samples": 0, "seq_tokens": 0, "steps": 0,
            "truncated": 0, "dropped": 0, "generation_loss": [], "t0": time.perf_counter()}


def _count_labels(batch: dict[str, Any]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


# ------------------------------------------------------------------------------ trainer


class Trainer:
    """Holds the run's state; ``fit`` runs every stage from where the run stands."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None,
                 model: Any = None, overwrite: bool = False) -> None:
        self.cfg = cfg
        # Before any model loads: a run folder that cannot be written fails in one line.
        self.run_dir = check_output_path(cfg.output_dir, folder=True, flag="output_dir",
                                         error=OutputError)
        if resume is None:
            clear_previous_run(self.run_dir, overwrite)
        self.dist = D.setup(cfg.train.distributed)
        self.main = self.dist.is_main
        torch.manual_seed(cfg.train.seed)
        self.fingerprint = resume_fingerprint(cfg)
        # Samples per optimiser step; the batch order depends on it alone (MixtureBatches).
        self.global_batch = cfg.train.batch_size * cfg.train.grad_accum * self.dist.world_size
        self.resume_from = ckpt.resolve_resume(resume) if resume else None
        self.resume_state: dict[str, Any] | None = None
        if self.resume_from is not None:
            self.resume_state = ckpt.read_state(self.resume_from)
            ckpt.check_compatible(self.resume_from, self.resume_state, self.fingerprint,
                                  self.global_batch)

        from mullm.model import MusicLLM

        if self.dist.mode == "fsdp" and cfg.model.llm.quantization != "none":
            raise ConfigError(
                f"train.distributed=fsdp with model.llm.quantization="
                f"{cfg.model.llm.quantization!r}: a 4-bit base is not sharded by FSDP here; "
                "use train.distributed=ddp (QLoRA already fits the base on one device)")
        self.model = model if model is not None else MusicLLM(cfg.model)
        if cfg.model.llm.quantization != "none":  # bitsandbytes placed the LLM
            for name in ("encoders", "layer_selectors", "adapters", "injectors", "outputs"):
                getattr(self.model, name).to(self.dist.device)
        elif self.dist.mode != "fsdp":  # fully_shard places each rank's shard itself
            self.model.to(self.dist.device)
        self.groups = self.model.trainable_groups()
        # Check every stage's selection before any data is read or step is taken.
        for name, st in cfg.stages.items():
            select_groups(self.groups, st.trainable, name)

        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_train_config(cfg))
            # Saved once so DataLoader workers receive a folder name, not the tokenizer.
            self.model.processor.save_pretrained(self.run_dir / "processor")
        D.barrier(self.dist)
        specs = media_specs(self.model)
        enc = self.model.encoders["audio"] if "audio" in self.model.encoders else None
        errors = self.run_dir / "errors.jsonl"
        names = list(cfg.data.train)
        prefixes = task_prefixes(cfg.model.music_output)
        self.train_data = ConversationDataset(
            [Source(s.path, s.weight, s.split, s.tasks, s.max_samples)
             for s in cfg.data.train.values()], specs, skip_bad=cfg.data.skip_bad,
            errors_path=errors, feature_cache=cfg.data.feature_cache, encoder=enc,
            task_prefixes=prefixes)
        self.source_names = names
        self.eval_data = None
        if cfg.data.eval:
            self.eval_data = ConversationDataset(
                [Source(s.path, s.weight, s.split, s.tasks, s.max_samples)
                 for s in cfg.data.eval.values()], specs, skip_bad=cfg.data.skip_bad,
                errors_path=errors, feature_cache=cfg.data.feature_cache, encoder=enc,
                task_prefixes=prefixes)
        self.collate = Collator(MusicProcessor.from_pretrained(self.run_dir / "processor"),
                                cfg.data.max_length)
        self.lengths = self.train_data.lengths(self.model) if cfg.data.group_by_length else None
        self.autocast, self.amp_dtype = autocast_for(cfg.train.precision, self.dist.device)
        self.logger = MetricsLogger(self.run_dir, cfg.train.tensorboard, cfg.train.wandb,
                                    config=to_dict(cfg), enabled=self.main)
        self.global_step = 0
        self._warned_truncation = False
        self.last_checkpoint: Path | None = None
        if self.resume_state is not None:
            self.global_step = int(self.resume_state["global_step"])
            self.last_checkpoint = self.resume_from
            self.model.load_trainable(self.resume_from)
            self.logger.truncate_after(self.global_step)
        # After a resume the checkpoint holds the fitted statistics: nothing is refitted.
        fitted = fit_input_norms(self.model, self.train_data, cfg.train.input_norm_clips,
                                 seed=cfg.train.seed)
        if fitted and self.main:
            print(f"[mullm] adapter input statistics fitted on {fitted} training clips",
                  file=sys.stderr)
        self.wrapped: nn.Module = self.model

    # ------------------------------------------------------------------ data
    def _loader(self, stage_index: int, stage: StageConfig, position: int
                ) -> Iterator[dict[str, Any]]:
        weights = [stage.mix.get(n, 0.0) if stage.mix is not None else s.weight
                   for n, s in self.cfg.data.train.items()]
        sampler = MixtureBatches(self.train_data.source_of, weights, self.cfg.train.batch_size,
                                 seed=self.cfg.train.seed * 1000 + stage_index,
                                 lengths=self.lengths, rank=self.dist.rank,
                                 world_size=self.dist.world_size, start=position,
                                 accum=self.cfg.train.grad_accum)
        workers = self.cfg.data.num_workers
        # Our own generator: building a loader must not draw from the global torch RNG,
        # or a resumed run would diverge from one that never stopped.
        loader = torch.utils.data.DataLoader(
            self.train_data, batch_sampler=sampler, collate_fn=self.collate,
            num_workers=workers, generator=torch.Generator().manual_seed(self.cfg.train.seed),
            persistent_workers=False, prefetch_factor=4 if workers else None)
        return iter(loader)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, stage_index: int, stage_name: str, stage_step: int,
                        position: int, optimizer: torch.optim.Optimizer, scheduler: Any,
                        scaler: Any, done: bool = False) -> Path:
        """Write checkpoint-{global_step}: model dir + optimizer, RNG, data position."""
        staging = ckpt.tmp_dir(self.run_dir, self.global_step)
        if self.main:
            staging.mkdir(parents=True, exist_ok=True)
        D.barrier(self.dist)
        self._save_model(staging)
        ckpt.save_optimizer(staging, self.model, optimizer, scheduler, scaler, self.main)
        ckpt.save_rng(staging, self.dist.rank)
        D.barrier(self.dist)
        path = ckpt.tmp_dir(self.run_dir, self.global_step).with_suffix("")
        if self.main:
            state = {"global_step": self.global_step, "stage": stage_name,
                     "stage_index": stage_index, "stage_step": stage_step,
                     "data_position": position, "stage_done": done,
                     "format": ckpt.FORMAT, "global_batch": self.global_batch,
                     "grad_accum": self.cfg.train.grad_accum,
                     "world_size": self.dist.world_size, "fingerprint": self.fingerprint,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            path = ckpt.finalize(staging, state, self.cfg.train.keep_checkpoints)
        D.barrier(self.dist)
        self.last_checkpoint = self.run_dir / ckpt.checkpoint_name(self.global_step)
        return path

    def _save_model(self, out_dir: Path) -> None:
        """save_pretrained on rank 0; under FSDP every rank first helps gather the shards."""
        if self.dist.mode == "fsdp":
            state = D.gather_state(self.model, self.model.saved_state_filter(), self.dist)
            if self.main:
                self.model.save_pretrained(out_dir, state_dict=state)
        elif self.main:
            self.model.save_pretrained(out_dir)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Eval loss on the first ``eval_batches`` eval batches plus a few generations."""
        # Under FSDP every rank must run the same forwards (each one gathers shards), so all
        # ranks evaluate and only rank 0 records; under DDP rank 0 evaluates alone.
        if self.eval_data is None or (not self.main and self.dist.mode != "fsdp"):
            return {}
        model = self.model
        was = model.training
        model.eval()
        t = self.cfg.train
        total, count, gen = 0.0, 0, []
        try:
            for idx in sequential_batches(len(self.eval_data), t.batch_size)[: t.eval_batches]:
                batch = self.collate([self.eval_data[i] for i in idx])
                if _count_labels(batch) == 0:
                    continue
                with self.autocast():
                    out = model(**_move(batch, self.dist.device))
                # eval_loss stays the LM loss, comparable with models without music output.
                total += float(out.get("lm_loss", out["loss"])) * int(out["num_tokens"])
                count += int(out["num_tokens"])
                gen += [float(out["generation_loss"])] if "generation_loss" in out else []
            samples = []
            for i in range(min(t.eval_samples, len(self.eval_data))):
                item = self.eval_data[i]
                msgs = item["messages"]
                last = max(j for j, m in enumerate(msgs) if m["role"] == "assistant")
                with D.root_params(model, self.dist):
                    reply = model.generate_text([msgs[:last]], [item["media"]],
                                                max_new_tokens=t.eval_max_new_tokens)[0]
                samples.append({"id": item["id"], "prompt": msgs[last - 1]["content"],
                                "reference": msgs[last]["content"], "generated": reply})
        finally:
            model.train(was)
        result = {"eval_loss": total / count if count else float("nan"), "samples": samples}
        return result | ({"eval_generation_loss": sum(gen) / len(gen)} if gen else {})

    def _log_eval(self, result: dict[str, Any], stage: str) -> None:
        if not result or not self.main:
            return
        rec = {"kind": "eval", "step": self.global_step, "stage": stage,
               "eval_loss": result["eval_loss"]}
        rec.update({k: v for k, v in result.items() if k == "eval_generation_loss"})
        self.logger.log(rec)
        with open(self.run_dir / "samples.jsonl", "a") as f:
            for s in result["samples"]:
                f.write(json.dumps({"step": self.global_step, **s}) + "\n")
        text = "\n\n".join(f"**{s['id']}** {s['prompt']}\n\n-> {s['generated']} "
                           f"(reference: {s['reference']})" for s in result["samples"])
        self.logger.text("samples", text, self.global_step)
        if self.cfg.train.progress:
            print(f"\n[eval step {self.global_step}] loss {result['eval_loss']:.4f}",
                  file=sys.stderr)
            for s in result["samples"]:
                print(f"  {s['id']}: {s['generated']!r} (reference {s['reference']!r})",
                      file=sys.stderr)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Path:
        """Run (or continue) every stage; returns the final model directory."""
        cfg = self.cfg
        rs = self.resume_state
        steps_this_process = 0
        try:
            for si, (name, stage) in enumerate(cfg.stages.items()):
                if rs is not None and (si < rs["stage_index"]
                                       or (si == rs["stage_index"] and rs["stage_done"])):
                    continue  # finished before the checkpoint we resume from
                chosen = select_groups(self.model.trainable_groups(), stage.trainable, name)
                n_train = set_trainable(self.model, chosen)
                if self.main:
                    print(f"[mullm] stage {name!r}: training {sorted(chosen)} "
                          f"({n_train:,} parameters) for {stage.steps} steps", file=sys.stderr)
                self.wrapped = D.wrap(self.model, self.dist)
                if self.wrapped is self.model:  # FSDP (in place) made new parameter objects
                    chosen = select_groups(self.model.trainable_groups(), stage.trainable, name)
                optimizer = build_optimizer(chosen, stage)
                scheduler = build_scheduler(optimizer, stage)
                scaler = torch.amp.GradScaler() if self.amp_dtype == torch.float16 else None
                stage_step, position = 0, 0
                if rs is not None and si == rs["stage_index"]:
                    stage_step = int(rs["stage_step"])
                    # The data position counts micro-batches: convert it when grad_accum
                    # changed with the number of processes (same global batch).
                    position = (int(rs["data_position"]) // int(rs["grad_accum"])
                                * self.cfg.train.grad_accum)
                    ckpt.load_optimizer(self.resume_from, self.model, optimizer, scheduler,
                                        scaler)
                    ckpt.set_rng_state(ckpt.load_rng(self.resume_from, self.dist.rank))
                    if self.main:
                        print(f"[mullm] resumed from {self.resume_from} at step "
                              f"{self.global_step} (stage {name!r} step {stage_step})",
                              file=sys.stderr)
                rs = None
                stopped = self._run_stage(si, name, stage, optimizer, scheduler, scaler,
                                          stage_step, position, steps_this_process)
                if stopped is None:
                    return self.last_checkpoint or self.run_dir
                steps_this_process = stopped
            self._save_model(self.run_dir / "model")
            if self.main:
                print(f"[mullm] done: model in {self.run_dir / 'model'}, metrics in "
                      f"{self.run_dir / 'metrics.jsonl'}", file=sys.stderr)
            self._plot()
            return self.run_dir / "model"
        finally:
            self.logger.close()
            D.cleanup(self.dist)

    def _plot(self) -> None:
        if self.main and self.cfg.train.plot:
            from mullm.train.plot import plot_run

            plot_run(self.run_dir)

    def _run_stage(self, si: int, name: str, stage: StageConfig, optimizer: Any, scheduler: Any,
                   scaler: Any, stage_step: int, position: int, steps_this_process: int
                   ) -> int | None:
        """Train one stage from ``stage_step``; None when ``train.max_steps`` stopped us."""
        t = self.cfg.train
        model = self.wrapped
        model.train()
        batches = self._loader(si, stage, position)
        bar = None
        if self.main and t.progress:
            from tqdm import tqdm

            bar = tqdm(total=stage.steps, initial=stage_step, desc=f"train[{name}]",
                       unit="step", dynamic_ncols=True, file=sys.stderr)
        window = _new_window()
        try:
            while stage_step < stage.steps:
                if t.max_steps is not None and steps_this_process >= t.max_steps:
                    return None
                micro = [next(batches) for _ in range(t.grad_accum)]
                position += t.grad_accum
                self._note_truncation(micro, window)
                local_tokens = sum(_count_labels(b) for b in micro)
                step_tokens = int(D.all_reduce_sum(torch.tensor(float(local_tokens)),
                                                   self.dist).item())
                if step_tokens == 0:
                    raise DataError(
                        f"step {self.global_step + 1}: batches {[b['ids'] for b in micro]} "
                        f"have no assistant tokens left after truncation to max_length="
                        f"{self.cfg.data.max_length}; raise data.max_length")
                loss_sum = torch.zeros((), dtype=torch.float64)
                for i, b in enumerate(micro):
                    last = i == len(micro) - 1
                    labelled = _count_labels(b)
                    with D.no_sync(model, self.dist.enabled and not last), self.autocast():
                        if labelled == 0 and self.dist.mode == "fsdp":
                            # No labelled token here (all cut by truncation). FSDP ranks
                            # must still run the same forward and backward (each layer
                            # gathers and reduces shards collectively): a zero through it all.
                            out = model(**_move(b, self.dist.device), return_logits=True)
                            part = out["logits"].sum().float() * 0.0
                        elif labelled == 0:
                            # The same for DDP: a zero that touches every trainable parameter.
                            part = sum((p.sum() * 0.0 for p in model.parameters()
                                        if p.requires_grad),
                                       torch.zeros((), device=self.dist.device))
                        else:
                            out = model(**_move(b, self.dist.device))
                            part = out["loss"].float() * out["num_tokens"]
                            window["generation_loss"] += [float(out["generation_loss"])] \
                                if "generation_loss" in out else []
                        self._check_finite(part, b, name)
                        scaled = part * (self.dist.world_size / step_tokens)
                        if scaler is not None:
                            scaler.scale(scaled).backward()
                        else:
                            scaled.backward()
                    loss_sum += part.detach().double().cpu()
                loss = float(D.all_reduce_sum(loss_sum, self.dist).item()) / step_tokens
                if scaler is not None:
                    scaler.unscale_(optimizer)
                params = [p for g in optimizer.param_groups for p in g["params"]]
                if t.max_grad_norm is not None:
                    grad_norm = D.scalar(torch.nn.utils.clip_grad_norm_(params,
                                                                          t.max_grad_norm))
                else:
                    grad_norm = D.scalar(torch.nn.utils.get_total_norm(
                        [p.grad for p in params if p.grad is not None]))
                if not math.isfinite(grad_norm) and scaler is None:
                    raise TrainingError(self._nan_message("gradient norm", grad_norm, micro,
                                                          name))
                lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                stage_step += 1
                steps_this_process += 1
                self.global_step += 1
                window["loss"] += loss
                window["steps"] += 1
                window["tokens"] += step_tokens
                window["samples"] += sum(len(b["ids"]) for b in micro) * self.dist.world_size
                window["seq_tokens"] += sum(int(b["attention_mask"].sum()) for b in micro) \
                    * self.dist.world_size
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{max(lrs.values()):.2e}",
                                    refresh=False)
                if self.global_step % t.log_every == 0 or stage_step == stage.steps:
                    dt = max(1e-9, time.perf_counter() - window["t0"])
                    rec = {"kind": "train", "step": self.global_step, "stage": name,
                           "stage_step": stage_step,
                           "loss": window["loss"] / window["steps"], "last_loss": loss,
                           "grad_norm": grad_norm,
                           "samples_per_s": window["samples"] / dt,
                           "tokens_per_s": window["seq_tokens"] / dt,
                           "labelled_tokens": window["tokens"],
                           "truncated_label_tokens": window["truncated"],
                           "dropped_samples": window["dropped"],
                           **{f"lr/{k}": v for k, v in lrs.items()}}
                    if gl := window["generation_loss"]:  # this rank's mean projector loss
                        rec["generation_loss"] = sum(gl) / len(gl)
                    self.logger.log(rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}",
                                        lr=f"{max(lrs.values()):.2e}",
                                        samples_s=f"{rec['samples_per_s']:.2f}")
                    window = _new_window()
                if t.eval_every and self.global_step % t.eval_every == 0:
                    self._log_eval(self.evaluate(), name)
                    D.barrier(self.dist)
                done = stage_step == stage.steps
                if (t.save_every and self.global_step % t.save_every == 0) or done:
                    self.save_checkpoint(si, name, stage_step, position, optimizer, scheduler,
                                         scaler, done=done)
                    self._plot()
            if t.eval_every and self.global_step % t.eval_every != 0:
                self._log_eval(self.evaluate(), name)
                D.barrier(self.dist)
        finally:
            if bar is not None:
                bar.close()
            del batches  # stop DataLoader workers now, not at garbage collection
        return steps_this_process

    def _note_truncation(self, micro: list[dict[str, Any]], window: dict[str, Any]) -> None:
        """Count answer tokens that ``data.max_length`` cut (and samples it emptied, which the
        collator left out); warn the first time, name the samples."""
        cut = sum(int(b.get("truncated_label_tokens", 0)) for b in micro)
        dropped = [i for b in micro for i in b.get("dropped_ids", [])]
        window["truncated"] += cut
        window["dropped"] += len(dropped)
        if (cut or dropped) and not self._warned_truncation and self.main:
            self._warned_truncation = True
            print(f"[mullm] warning: data.max_length={self.cfg.data.max_length} cut {cut} "
                  f"answer token(s) at step {self.global_step + 1}"
                  + (f" and left out {len(dropped)} sample(s) whose whole answer it cut "
                     f"({dropped[:5]})" if dropped else "")
                  + "; raise data.max_length (counts: truncated_label_tokens and "
                  "dropped_samples in metrics.jsonl)", file=sys.stderr)

    def _check_finite(self, part: torch.Tensor, batch: dict[str, Any], stage: str) -> None:
        bad = torch.tensor(0.0 if torch.isfinite(part.detach()).all() else 1.0)
        if float(D.all_reduce_sum(bad, self.dist)) > 0:
            raise TrainingError(self._nan_message("loss", float(part.detach()), [batch], stage))

    def _nan_message(self, what: str, value: float, batches: list[dict], stage: str) -> str:
        ids = [i for b in batches for i in b["ids"]]
        last = self.last_checkpoint or "none yet (no checkpoint was written)"
        return (f"{what} is {value} at step {self.global_step + 1} (stage {stage!r}) on rank "
                f"{self.dist.rank}, batch ids {ids}; stopping. Last good checkpoint: {last}. "
                f"Lower the learning rate or check these samples, then resume with --resume.")


def train(config: str | Path | TrainConfig | dict, overrides: list[str] | None = None,
          resume: str | Path | None = None, overwrite: bool = False) -> Path:
    """Load a training config (path, data or TrainConfig), train it, return the model dir."""
    cfg = config if isinstance(config, TrainConfig) else load_train_config(config, overrides)
    return Trainer(cfg, resume=resume, overwrite=overwrite).fit()
