"""Exact resume: a training process killed with SIGKILL and resumed logs the same losses as
one that never stopped (bitwise on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mullm.testing import make_tiny_llm
from mullm.train.toydata import tiny_train_config

STEPS = 24
KILL_AT = 6


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mullm.cli", "train", "--config", str(config), *extra]


def _losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            out[rec["step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("resume")
    llm = make_tiny_llm(work / "llm")
    cfg = tiny_train_config(work, llm, steps=STEPS, save_every=KILL_AT, batch_size=2)
    # Two workers decode audio: the order of batches must not depend on them.
    cfg["data"]["num_workers"] = 2
    cfg["model"]["modalities"]["audio"]["adapter"]["dropout"] = 0.1  # RNG state matters
    return work, cfg


@pytest.fixture(scope="module")
def reference_run(setup: tuple[Path, dict]) -> Path:
    """A run that never stopped: its losses are the reference, its folder a checkpoint."""
    work, cfg = setup
    (work / "ref.yaml").write_text(yaml.safe_dump(dict(cfg, output_dir=str(work / "ref"))))
    subprocess.run(_cmd(work / "ref.yaml"), env=_env(), check=True, capture_output=True)
    return work / "ref"


def test_sigkill_and_resume_matches_uninterrupted(setup: tuple[Path, dict],
                                                  reference_run: Path) -> None:
    work, cfg = setup
    run_cfg = dict(cfg, output_dir=str(work / "killed"))
    (work / "run.yaml").write_text(yaml.safe_dump(run_cfg))

    proc = subprocess.Popen(_cmd(work / "run.yaml"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    target = work / "killed" / f"checkpoint-{KILL_AT:06d}" / "trainer_state.json"
    deadline = time.time() + 120
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the real signal, to the trainer and its workers
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (work / "killed" / "model").exists(), "the run finished before the kill"
    killed_steps = max(_losses(work / "killed"))
    assert killed_steps < STEPS

    res = subprocess.run(_cmd(work / "run.yaml", "--resume", str(work / "killed")),
                         env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr
    ref, got = _losses(reference_run), _losses(work / "killed")
    assert sorted(got) == list(range(1, STEPS + 1))
    # Bitwise: the same floats for every step, before and after the kill.
    assert got == ref
    assert len([s for s in ref if s > KILL_AT]) >= STEPS - KILL_AT


def test_resume_from_another_config_is_refused(setup: tuple[Path, dict],
                                               reference_run: Path) -> None:
    work, cfg = setup
    src = reference_run
    other = dict(cfg, output_dir=str(work / "other"))
    other["stages"] = {"main": dict(cfg["stages"]["main"], lr=1e-2)}
    (work / "other.yaml").write_text(yaml.safe_dump(other))
    res = subprocess.run(_cmd(work / "other.yaml", "--resume", str(src)), env=_env(),
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert "different config" in res.stderr and "stages" in res.stderr
    assert not (work / "other" / "metrics.jsonl").exists()  # stopped before the first step
