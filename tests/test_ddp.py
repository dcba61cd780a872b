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
    assert (ck / "optimizer.rank0.pt").is_file() and (ck / "optimizer.rank1.pt").is_file()
    assert not list((tmp_path / "ddp").glob("*.tmp"))
