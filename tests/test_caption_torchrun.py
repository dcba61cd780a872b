"""Captioning over processes: two gloo CPU processes under torchrun split the inputs as
``--shard rank/2`` does, rank 0 merges, and a kill of one rank resumes to exactly one
record per input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.caption import shard_of  # noqa: E402
from mullm.caption.distributed import shard_file, torchrun_launch  # noqa: E402
from mullm.caption.settings import CaptionJobError  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torchrun")
    llm = make_tiny_llm(root / "llm")
    cfg = {"llm": {"name_or_path": str(llm)}, "modalities": {"audio": {
        "encoder": {"name": "spectral", "max_duration_s": 4.0},
        "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean", "pool_frames": 8},
        "injection": {"kind": "splice"}}}}
    return MusicLLM(from_dict(ModelConfig, cfg)).save_pretrained(root / "model")


def _inputs(folder: Path, n: int, seconds: float) -> list[str]:
    for i in range(n):
        write_wav(folder / f"clip{i:02d}.wav", synth_clip(duration_s=seconds, seed=i), 16000)
    (folder / "broken.wav").write_text("not audio")
    return sorted([f"clip{i:02d}.wav" for i in range(n)] + ["broken.wav"])


def _command(model_dir: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", "2", "-m", "mullm.cli", "caption", "--model", str(model_dir),
            "--input", str(inputs), "--out", str(out), "--no-progress", *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_split_like_shards_and_rank0_merges(model_dir, tmp_path):
    ids = _inputs(tmp_path / "in", 9, 1.0)
    out = tmp_path / "out" / "caps.jsonl"
    res = subprocess.run(_command(model_dir, tmp_path / "in", out, "--max-new-tokens", "3"),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "merged 10 record(s), 1 failed, from 2 shard files" in res.stdout
    merged = _records(out)
    assert [r["id"] for r in merged] == ids  # each input exactly once, sorted
    assert [r["id"] for r in merged if r["error"]] == ["broken.wav"]
    for rank in (0, 1):  # the same split as --shard rank/2
        part = [r["id"] for r in _records(shard_file(out, rank, 2))]
        assert sorted(part) == [i for i in ids if shard_of(i, 2) == rank]
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["shard"] is None and len(meta["merged_from"]) == 2


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_rank_resumes_to_one_record_per_input(model_dir, tmp_path, victim):
    ids = _inputs(tmp_path / "in", 24, 3.0)
    out = tmp_path / "out" / "caps.jsonl"
    # Six windows per clip, one window per batch: each rank works for a while.
    cmd = _command(model_dir, tmp_path / "in", out, "--max-new-tokens", "6", "--batch-size",
                   "1", "--window-s", "0.5", "--summary", "concat")
    part1 = shard_file(out, victim, 2)
    share = sum(1 for i in ids if shard_of(i, 2) == victim)
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if part1.exists() and part1.read_bytes().count(b"\n") >= 1:
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.02)
        pid = _rank_pid(proc.pid, victim)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # freeze it mid-run, then kill it
        done_before = part1.read_bytes().count(b"\n")
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not out.exists()  # no merge of incomplete shards
    assert 1 <= done_before < share, "the kill must land mid-run"
    kept = {r["id"]: r for r in _records(part1)}
    res = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{len(kept)} of {share} item(s) already done" in res.stderr
    merged = _records(out)
    assert [r["id"] for r in merged] == ids
    by_id = {r["id"]: r for r in merged}
    assert all(by_id[k] == r for k, r in kept.items())  # nothing redone, nothing lost


def test_launch_from_the_environment():
    assert torchrun_launch({}) is None and torchrun_launch({"WORLD_SIZE": "1"}) is None
    launch = torchrun_launch({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1",
                              "LOCAL_WORLD_SIZE": "2"})
    assert (launch.rank, launch.world, launch.local_rank, launch.local_world) == (3, 4, 1, 2)
    with pytest.raises(CaptionJobError, match="RANK is missing"):
        torchrun_launch({"WORLD_SIZE": "2"})
    with pytest.raises(CaptionJobError, match="outside 0..1"):
        torchrun_launch({"WORLD_SIZE": "2", "RANK": "2"})
    assert shard_file("runs/caps.jsonl", 1, 4) == Path("runs/caps.shard-1-of-4.jsonl")
