"""Checkpoint pieces in one process: the optimizer, scheduler and grad-scaler state round-trip
through DCP (safetensors, no pickle) exactly, and resumes from an older layout or another
global batch are refused by name (the 2 -> 1 process resume runs in test_ddp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mullm.train import checkpoint as ckpt
from mullm.train.config import StageConfig
from mullm.train.trainer import build_scheduler


def _setup(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, object, object]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)  # frozen: no optimizer state
    groups = [{"params": [model[0].weight], "lr": 1e-2, "weight_decay": 0.1, "name": "a"},
              {"params": list(model[2].parameters()), "lr": 3e-3, "weight_decay": 0.0,
               "name": "b"}]
    opt = torch.optim.AdamW(groups)
    sched = build_scheduler(opt, StageConfig(steps=10, warmup_steps=2))
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    return model, opt, sched, scaler


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: object) -> None:
    model(torch.randn(3, 5)).pow(2).sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_optimizer_state_round_trips_exactly(tmp_path: Path) -> None:
    model, opt, sched, scaler = _setup(0)
    for _ in range(3):
        _step(model, opt, sched)
    scaler.scale(torch.ones(()))  # creates the scale tensor lazily
    scaler.update(256.0)
    ckpt.save_optimizer(tmp_path, model, opt, sched, scaler, is_main=True)
    files = sorted(p.name for p in (tmp_path / ckpt.OPTIMIZER_DIR).iterdir())
    assert files and all(f.endswith(".safetensors") for f in files)  # no pickled metadata
    with safe_open(str(tmp_path / ckpt.OPTIMIZER_DIR / files[0]), "pt") as f:
        assert "0.weight.exp_avg" in f.keys() and "0.bias.exp_avg" not in f.keys()

    # A fresh model with other weights: only the optimizer state is restored, exactly.
    model2, opt2, sched2, scaler2 = _setup(1)
    model2.load_state_dict(model.state_dict())
    ckpt.load_optimizer(tmp_path, model2, opt2, sched2, scaler2)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k]), (i, k)
    assert sched2.state_dict() == sched.state_dict() and scaler2.get_scale() == 256.0
    # ... so both continue identically.
    torch.manual_seed(5)
    _step(model, opt, sched)
    torch.manual_seed(5)
    _step(model2, opt2, sched2)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_state_for_parameters_this_stage_does_not_train_is_refused(tmp_path: Path) -> None:
    model, opt, sched, scaler = _setup(0)
    _step(model, opt, sched)
    ckpt.save_optimizer(tmp_path, model, opt, sched, None, is_main=True)
    model[0].weight.requires_grad_(False)
    opt2 = torch.optim.AdamW(list(model[2].parameters()), lr=1e-3)
    with pytest.raises(ckpt.ResumeError, match=r"3 tensor\(s\) this stage does not train"):
        ckpt.load_optimizer(tmp_path, model, opt2, build_scheduler(opt2, StageConfig()), None)


def _state(**kw: object) -> dict:
    return {"format": ckpt.FORMAT, "fingerprint": {"model": "m"}, "global_batch": 4,
            "world_size": 2, **kw}


def test_resume_rules(tmp_path: Path) -> None:
    fp = {"model": "m"}
    ckpt.check_compatible(tmp_path, _state(), fp, 4)  # another process count, same batch
    with pytest.raises(ckpt.ResumeError, match="older mullm"):
        ckpt.check_compatible(tmp_path, _state(format=1), fp, 4)
    with pytest.raises(ckpt.ResumeError, match=r"global batch of 4 .* resumed with 2"):
        ckpt.check_compatible(tmp_path, _state(), fp, 2)
    with pytest.raises(ckpt.ResumeError, match=r"\(model section\(s\) differ\)"):
        ckpt.check_compatible(tmp_path, _state(), {"model": "other"}, 4)


def test_rng_of_a_rank_that_did_not_save_is_rank_0s(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ckpt.save_rng(tmp_path, 0)
    want = torch.rand(3)
    torch.manual_seed(9)
    ckpt.set_rng_state(ckpt.load_rng(tmp_path, 1))
    assert torch.equal(torch.rand(3), want)
