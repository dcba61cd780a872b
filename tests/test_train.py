"""The training recipe on a tiny seeded model: loss goes down, checkpoints are loadable
models, stages freeze what they should, accumulation equals a bigger batch, bad configs and
NaN losses stop with clear messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mullm.errors import ConfigError, DataError
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm
from mullm.train import Trainer, TrainingError, load_train_config, train
from mullm.train.metrics import read_metrics
from mullm.train.toydata import tiny_train_config


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("train")
    llm = make_tiny_llm(work / "llm")
    return work, tiny_train_config(work, llm, steps=20)


def _cfg(base: tuple[Path, dict], name: str, **changes: object) -> dict:
    work, cfg = base
    cfg = copy.deepcopy(cfg)
    cfg["output_dir"] = str(work / name)
    for key, value in changes.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def test_loss_decreases_and_checkpoint_is_a_model(base: tuple[Path, dict]) -> None:
    cfg = _cfg(base, "basic", **{"train.save_every": 10, "train.plot": True,
                                 "train.tensorboard": True, "train.eval_every": 10,
                                 "train.eval_samples": 1, "train.eval_max_new_tokens": 4})
    cfg["data"]["eval"] = {"toy": {"path": cfg["data"]["train"]["toy"]["path"],
                                   "max_samples": 8}}
    trainer = Trainer(load_train_config(cfg))
    out = trainer.fit()
    run = Path(cfg["output_dir"])
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert len(losses) == 20
    # (the tiny random LLM has a frozen tied head: its logits have a small range, so the
    # loss can only fall a little below ln(vocab); the SmolLM2 runs fall much further)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.15
    evals = read_metrics(run / "metrics.jsonl", "eval")
    assert [e["step"] for e in evals] == [10, 20]
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert (run / "samples.jsonl").is_file() and (run / "curves.png").stat().st_size > 1000
    assert any((run / "tensorboard").iterdir())
    ckpts = sorted(p.name for p in run.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-000010", "checkpoint-000020"]
    # Every checkpoint folder is a valid --model, and the final one reproduces the model.
    loaded = MusicLLM.load(run / "checkpoint-000020")
    ref = trainer.model
    ref.eval()
    batch = trainer.collate([trainer.train_data[i] for i in range(4)])
    args = {k: batch[k] for k in ("input_ids", "attention_mask", "labels", "media")}
    with torch.no_grad():
        assert torch.equal(ref(**args)["loss"], loaded(**args)["loss"])
    assert out == run / "model" and (out / "trainable.safetensors").is_file()
    state = json.loads((run / "checkpoint-000010" / "trainer_state.json").read_text())
    assert state["global_step"] == 10 and state["data_position"] == 10


def test_stages_train_only_their_groups(base: tuple[Path, dict]) -> None:
    cfg = _cfg(base, "stages")
    cfg["stages"] = {
        "align": {"trainable": ["adapter.audio"], "steps": 3, "lr": 1e-2},
        "joint": {"trainable": ["adapter.*", "lora"], "steps": 3, "lr": 1e-3,
                  "lr_groups": {"lora": 5e-4}},
    }
    train(cfg)
    run = Path(cfg["output_dir"])
    init = MusicLLM.load(load_train_config(cfg).model)
    lora0 = {k: v for k, v in init.llm.state_dict().items() if "lora_" in k}
    after_align = MusicLLM.load(run / "checkpoint-000003")
    after_joint = MusicLLM.load(run / "checkpoint-000006")

    def lora(m: MusicLLM) -> dict:
        return {k: v for k, v in m.llm.state_dict().items() if "lora_" in k}

    assert all(torch.equal(lora(after_align)[k], v) for k, v in lora0.items())
    assert not all(torch.equal(lora(after_joint)[k], v) for k, v in lora0.items())
    a3 = load_file(str(run / "checkpoint-000003" / "trainable.safetensors"))
    a6 = load_file(str(run / "checkpoint-000006" / "trainable.safetensors"))
    assert any(not torch.equal(a3[k], a6[k]) for k in a3)
    recs = read_metrics(run / "metrics.jsonl")
    assert [r["stage"] for r in recs] == ["align"] * 3 + ["joint"] * 3
    assert "lr/lora" not in recs[0] and "lr/lora" in recs[3]
    assert recs[3]["lr/lora"] < recs[3]["lr/adapter.audio"]


def test_accumulation_equals_bigger_batch(base: tuple[Path, dict]) -> None:
    one = _cfg(base, "b4", **{"train.batch_size": 4, "train.grad_accum": 1,
                              "stages.main.steps": 3})
    two = _cfg(base, "b2x2", **{"train.batch_size": 2, "train.grad_accum": 2,
                                "stages.main.steps": 3})
    train(one)
    train(two)
    a = read_metrics(Path(one["output_dir"]) / "metrics.jsonl")
    b = read_metrics(Path(two["output_dir"]) / "metrics.jsonl")
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["labelled_tokens"] == y["labelled_tokens"]


def test_a_new_run_never_mixes_with_an_old_one(base: tuple[Path, dict]) -> None:
    """A second run into a used output_dir is refused, naming --resume and --overwrite;
    with overwrite it starts clean (metrics from this run only, old checkpoints gone)."""
    cfg = _cfg(base, "twice", **{"stages.main.steps": 4, "train.save_every": 2})
    train(cfg)
    run = Path(cfg["output_dir"])
    before = read_metrics(run / "metrics.jsonl")
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume .*--overwrite"):
        train(cfg)
    assert read_metrics(run / "metrics.jsonl") == before
    cfg["stages"]["main"]["steps"] = 3
    train(cfg, overwrite=True)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-000002",
                                                                "checkpoint-000003"]


def test_unwritable_output_dir_is_refused_before_the_model_loads(
        base: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    import mullm.model
    from mullm.errors import OutputError

    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("the model was built before output_dir was checked")

    monkeypatch.setattr(mullm.model, "MusicLLM", no_model)
    cfg = _cfg(base, "ro")
    cfg["output_dir"] = "/sys/mullm-test-run"
    with pytest.raises(OutputError, match=r"output_dir /sys/mullm-test-run: cannot write"):
        Trainer(load_train_config(cfg))


def test_stage_that_trains_nothing_is_refused(base: tuple[Path, dict]) -> None:
    cfg = _cfg(base, "nothing")
    cfg["stages"] = {"main": {"trainable": ["injection.*"], "steps": 2}}
    with pytest.raises(ConfigError, match="trains? nothing"):
        Trainer(load_train_config(cfg))
    cfg["stages"] = {"main": {"trainable": ["llm"], "steps": 2}}
    with pytest.raises(ConfigError, match="'llm' is not a group of this model"):
        Trainer(load_train_config(cfg))
    cfg["stages"] = {"main": {"trainable": [], "steps": 2}}
    with pytest.raises(ConfigError, match="train nothing"):
        load_train_config(cfg)
    assert not (Path(cfg["output_dir"]) / "metrics.jsonl").exists()


def test_dataset_without_usable_sample_is_refused(base: tuple[Path, dict], tmp_path: Path
                                                  ) -> None:
    cfg = _cfg(base, "nodata")
    empty = tmp_path / "empty.jsonl"
    row = json.loads(Path(cfg["data"]["train"]["toy"]["path"]).read_text().splitlines()[0])
    row["turns"] = row["turns"][:1]  # no assistant reply: nothing to learn from
    empty.write_text(json.dumps(row) + "\n")
    cfg["data"]["train"] = {"toy": {"path": str(empty)}}
    with pytest.raises(DataError, match="empty.jsonl:1 .*no assistant turn"):
        Trainer(load_train_config(cfg))
    cfg = _cfg(base, "nodata")
    cfg["data"]["train"]["toy"]["split"] = "valid"  # the toy data has train/test only
    with pytest.raises(DataError, match="no usable conversation with split='valid'"):
        Trainer(load_train_config(cfg))
    assert not (Path(cfg["output_dir"]) / "metrics.jsonl").exists()


def test_nan_loss_stops_with_step_batch_and_checkpoint(base: tuple[Path, dict]) -> None:
    cfg = _cfg(base, "nan", **{"train.save_every": 2, "stages.main.steps": 6})
    trainer = Trainer(load_train_config(cfg))

    def poison(module: torch.nn.Module, inputs: tuple, output: tuple) -> tuple | None:
        if trainer.global_step >= 3:
            return (output[0] * float("nan"), output[1])
        return None

    trainer.model.adapters["audio"].register_forward_hook(poison)
    with pytest.raises(TrainingError) as info:
        trainer.fit()
    msg = str(info.value)
    assert "loss is nan at step 4" in msg
    assert "checkpoint-000002" in msg and "batch ids ['toy" in msg
    recs = read_metrics(Path(cfg["output_dir"]) / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]  # nothing logged for the bad step


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The LR each of ``steps`` optimizer steps runs at."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("warmup,steps,expected", [
    # Linear warmup from lr / W at the first step, the peak at step W - 1, then the cosine,
    # which ends at exactly lr * min_lr_ratio on the last step (0.5 * (1 + cos(pi/4)) ...).
    (2, 6, [0.5, 1.0, 0.868198, 0.55, 0.231802, 0.1]),
    (1, 3, [1.0, 0.55, 0.1]),
    (0, 4, [0.868198, 0.55, 0.231802, 0.1]),
])
def test_schedule_values_and_exact_resume(warmup: int, steps: int,
                                          expected: list[float]) -> None:
    from mullm.train.config import StageConfig
    from mullm.train.trainer import build_scheduler

    def fresh() -> torch.optim.lr_scheduler.LRScheduler:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
        return build_scheduler(opt, StageConfig(steps=steps, lr=1.0, warmup_steps=warmup,
                                                min_lr_ratio=0.1))

    full = _lrs(fresh(), steps)
    assert full == pytest.approx(expected, abs=1e-6)
    # Resume after k steps: a new optimizer + scheduler loading both states continues on
    # exactly the same values (what the trainer's checkpoints do).
    k = steps // 2
    first = fresh()
    head = _lrs(first, k)
    again = fresh()
    again.optimizer.load_state_dict(first.optimizer.state_dict())
    again.load_state_dict(first.state_dict())
    assert head + _lrs(again, steps - k) == full
