"""Distributed data parallel on CPU: two gloo processes at batch 2 train like one process at
batch 4 (same samples per step, token-weighted loss), and only rank 0 writes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mullm.testing import make_tiny_llm
from mullm.train.metrics import read_metrics
from mullm.train.toydata import tiny_train_config


def test_two_gloo_processes_match_one_with_twice_the_batch(tmp_path: Path) -> None:
    llm = make_tiny_llm(tmp_path / "llm")
    base = tiny_train_config(tmp_path, llm, steps=4, save_every=2)
    single = copy.deepcopy(base)
    single["train"]["batch_size"] = 4
    single["output_dir"] = str(tmp_path / "single")
    ddp = copy.deepcopy(base)
    ddp["train"]["batch_size"] = 2
    ddp["train"]["distributed"] = "ddp"
    ddp["output_dir"] = str(tmp_path / "ddp")
    for name, cfg in (("single", single), ("ddp", ddp)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    train = ["-m", "mullm.cli", "train", "--config"]
    res = subprocess.run([sys.executable, *train, str(tmp_path / "single.yaml")], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", *train, str(tmp_path / "ddp.yaml")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a = read_metrics(tmp_path / "single" / "metrics.jsonl")
    b = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]  # logged once (rank 0), not twice
    for x, y in zip(a, b):
        assert x["labelled_tokens"] == y["labelled_tokens"]
        # gradients are all-reduced: the runs stay together step after step
        assert abs(x["loss"] - y["loss"]) < 1e-4 * abs(x["loss"]), (x["loss"], y["loss"])
    ck = tmp_path / "ddp" / "checkpoint-000004"
    assert (ck / "trainable.safetensors").is_file()
    # DCP: the optimizer's tensors as safetensors shards (DDP replicas are written once),
    # no pickled metadata; RNG per rank.
    assert list((ck / "optimizer").glob("*.safetensors")) and (ck / "optimizer.json").is_file()
    assert not list((ck / "optimizer").glob("*metadata*"))
    assert (ck / "rng.rank0.pt").is_file() and (ck / "rng.rank1.pt").is_file()
    assert not list((tmp_path / "ddp").glob("*.tmp"))


def _run(args: list[str], env: dict, nproc: int = 1) -> None:
    train = ["-m", "mullm.cli", "train", *args]
    cmd = [sys.executable, *train] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        str(nproc), *train]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_fsdp_on_two_gloo_processes_trains_saves_and_resumes(tmp_path: Path) -> None:
    """FSDP (fully_shard) shards the LLM over two CPU processes: the losses follow one process
    with twice the batch through a stage switch (adapter alone, then adapter + LoRA), the
    saved model directory holds whole tensors equal to the single run's, evaluation and
    generation run on the shards, and a run stopped mid-stage resumes onto the same losses, on
    two processes and on one (DCP reshards the optimizer state; grad_accum keeps the global
    batch)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from mullm.model import MusicLLM

    llm = make_tiny_llm(tmp_path / "llm")
    base = tiny_train_config(tmp_path, llm, steps=2, save_every=1, eval_every=2,
                             eval_batches=1, eval_samples=1, eval_max_new_tokens=4)
    base["data"]["eval"] = {"toy": dict(base["data"]["train"]["toy"])}
    base["stages"] = {"align": {"trainable": ["adapter.audio"], "steps": 2, "lr": 2e-2,
                                "warmup_steps": 1},
                      "joint": {"trainable": ["adapter.audio", "lora"], "steps": 2,
                                "lr": 2e-2, "warmup_steps": 1}}
    configs = {}
    for name, batch, mode in (("single", 4, "auto"), ("fsdp", 2, "fsdp"),
                              ("stopped", 2, "fsdp")):
        cfg = copy.deepcopy(base)
        cfg["train"].update(batch_size=batch, distributed=mode)
        cfg["output_dir"] = str(tmp_path / name)
        if name == "stopped":
            cfg["train"]["max_steps"] = 3  # stops inside the second stage
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    _run(["--config", str(configs["single"])], env)
    _run(["--config", str(configs["fsdp"])], env, nproc=2)
    _run(["--config", str(configs["stopped"])], env, nproc=2)
    stopped = tmp_path / "stopped"
    assert not (stopped / "model").exists()
    # Resuming needs only the checkpoint; max_steps comes off so the run can finish.
    cfg = yaml.safe_load(configs["stopped"].read_text())
    cfg["train"]["max_steps"] = None
    configs["stopped"].write_text(yaml.safe_dump(cfg))
    # The same checkpoint continued by one process at batch 2 x grad_accum 2 (global 4).
    shutil.copytree(stopped, tmp_path / "one")
    one = dict(cfg, output_dir=str(tmp_path / "one"))
    one["train"] = dict(cfg["train"], distributed="auto", grad_accum=2)
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(one))
    _run(["--config", str(configs["stopped"]), "--resume", str(stopped)], env, nproc=2)
    _run(["--config", str(tmp_path / "one.yaml"), "--resume", str(tmp_path / "one")], env)

    def train_losses(run: str) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    single, fsdp, resumed = (train_losses(n) for n in ("single", "fsdp", "stopped"))
    assert [s for s, _ in fsdp] == [1, 2, 3, 4] == [s for s, _ in single]
    for (_, a), (_, b) in zip(single, fsdp):
        assert abs(a - b) < 1e-4 * abs(a), (single, fsdp)
    assert resumed == fsdp  # the same reductions in the same order: bitwise
    on_one = train_losses("one")
    assert [s for s, _ in on_one] == [1, 2, 3, 4] and on_one[:3] == fsdp[:3]
    assert abs(on_one[3][1] - fsdp[3][1]) < 1e-4 * abs(fsdp[3][1]), (on_one, fsdp)
    evals = read_metrics(tmp_path / "fsdp" / "metrics.jsonl", kind="eval")
    assert [r["step"] for r in evals] == [2, 4]
    assert (tmp_path / "fsdp" / "samples.jsonl").read_text().count("\n") == 2  # rank 0 only

    # Whole tensors, equal to the single-process run's, in a directory that loads.
    a = load_file(str(tmp_path / "single" / "model" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "fsdp" / "model" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    c = load_file(str(tmp_path / "one" / "model" / "trainable.safetensors"))
    assert c.keys() == b.keys() and all(torch.allclose(c[k], b[k], atol=1e-4) for k in b)
    la = load_file(str(tmp_path / "single" / "model" / "lora" / "adapter_model.safetensors"))
    lb = load_file(str(tmp_path / "fsdp" / "model" / "lora" / "adapter_model.safetensors"))
    assert la.keys() == lb.keys() and la
    assert any(float(v.abs().max()) > 0 for k, v in lb.items() if "lora_B" in k)  # trained
    for k in la:
        assert torch.allclose(la[k], lb[k], atol=1e-4), k
    # from_pretrained loads strictly: a missing or mis-shaped tensor raises here.
    model = MusicLLM.from_pretrained(tmp_path / "fsdp" / "model")
    loaded = model.trainable_state_dict()
    assert loaded.keys() == b.keys() and all(torch.equal(loaded[k], b[k]) for k in b)
