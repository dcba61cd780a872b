"""Resumable captioning: SIGKILL mid-run, partial lines, retries, refused resumes, locks."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mullm import caption as C  # noqa: E402
from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.cli import main as cli  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402


def _config(llm: Path, seed: int = 0) -> dict:
    return {"llm": {"name_or_path": str(llm)}, "seed": seed,
            "modalities": {"audio": {
                "encoder": {"name": "spectral", "max_duration_s": 4.0},
                "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean",
                            "pool_frames": 8},
                "injection": {"kind": "splice"}}}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    llm = make_tiny_llm(root / "llm")
    return MusicLLM(from_dict(ModelConfig, _config(llm))).save_pretrained(root / "model")


def lines(path: Path) -> list[dict]:
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), "the file ends in a partial line"
    return [json.loads(x) for x in data.decode().splitlines()]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def make_inputs(folder: Path, n: int) -> list[str]:
    for i in range(n):
        write_wav(folder / f"clip{i:02d}.wav", synth_clip(duration_s=0.3 + 0.05 * i, seed=i),
                  16000)
    return [f"clip{i:02d}.wav" for i in range(n)]


def test_sigkill_mid_run_then_resume(model_dir, tmp_path):
    ids = make_inputs(tmp_path / "in", 20)
    out = tmp_path / "caps.jsonl"
    cmd = [sys.executable, "-m", "mullm.cli", "caption", "--model", str(model_dir),
           "--input", str(tmp_path / "in"), "--out", str(out), "--batch-size", "2",
           "--max-new-tokens", "12", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def start() -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    # A kill during start-up (model load) loses nothing and leaves nothing behind.
    p = start()
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    kills = 0
    for _ in range(3):
        before = count_lines(out)
        p = start()
        deadline = time.time() + 240
        # Kill as soon as new records appear: the next batch is then in flight.
        while p.poll() is None and count_lines(out) < before + 2 and time.time() < deadline:
            time.sleep(0.01)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
        assert lines(out)  # every line written so far is a whole record
        got = [r["id"] for r in lines(out)]
        assert len(got) == len(set(got)), "a duplicate id after SIGKILL"
    assert kills >= 2, "the job finished before it could be killed twice"
    done_before = len(lines(out))
    assert done_before < len(ids)
    p = start()
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    assert f"{done_before} of {len(ids)} item(s) already done" in err.decode()
    recs = lines(out)
    assert sorted(r["id"] for r in recs) == ids  # every input exactly once
    assert all(r["error"] is None for r in recs)


def _run(model_dir: Path, inputs: Path, out: Path, *extra: str) -> int:
    return cli(["caption", "--model", str(model_dir), "--input", str(inputs), "--out",
                str(out), "--max-new-tokens", "3", "--no-progress", *extra])


def test_partial_last_line_is_cut_and_redone(model_dir, tmp_path, capsys):
    ids = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "caps.jsonl"
    assert _run(model_dir, tmp_path / "in", out) == 0
    data = out.read_bytes().splitlines(keepends=True)
    # As if killed while writing the last record: half a line, no newline.
    out.write_bytes(b"".join(data[:-1]) + data[-1][: len(data[-1]) // 2])
    assert C.read_records(out) and len(C.read_records(out)) == 2
    capsys.readouterr()
    assert _run(model_dir, tmp_path / "in", out) == 0
    assert "partial last line" in capsys.readouterr().err
    assert sorted(r["id"] for r in lines(out)) == ids


def test_repair_tail_unit(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "cap')
    assert C.repair_tail(f) == len(b'{"id": "c", "cap')
    assert f.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert C.repair_tail(f) == 0
    f.write_bytes(b'{"id": ')
    C.repair_tail(f)
    assert f.read_bytes() == b""


def test_failed_items_skipped_unless_retry_failed(model_dir, tmp_path):
    make_inputs(tmp_path / "in", 2)
    broken = tmp_path / "in" / "broken.wav"
    broken.write_bytes(b"")
    out = tmp_path / "caps.jsonl"
    assert _run(model_dir, tmp_path / "in", out) == 0
    assert next(r for r in lines(out) if r["id"] == "broken.wav")["error"]
    write_wav(broken, synth_clip(duration_s=0.5), 16000)  # the file gets fixed
    assert _run(model_dir, tmp_path / "in", out) == 0
    assert next(r for r in lines(out) if r["id"] == "broken.wav")["error"]  # still skipped
    assert _run(model_dir, tmp_path / "in", out, "--retry-failed") == 0
    recs = lines(out)
    assert sorted(r["id"] for r in recs) == ["broken.wav", "clip00.wav", "clip01.wav"]
    assert all(r["error"] is None for r in recs)


def test_resume_with_other_settings_or_model_is_refused(model_dir, tmp_path, capsys):
    make_inputs(tmp_path / "in", 2)
    out = tmp_path / "caps.jsonl"
    assert _run(model_dir, tmp_path / "in", out) == 0
    capsys.readouterr()
    rc = cli(["caption", "--model", str(model_dir), "--input", str(tmp_path / "in"), "--out",
              str(out), "--max-new-tokens", "5", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "max_new_tokens: file has 3, this run 5" in err and "new --out" in err
    assert _run(model_dir, tmp_path / "in", out, "--prompt", "Other?") == 2
    assert "prompt" in capsys.readouterr().err
    # Another model (other adapter weights) is refused ...
    cfg = from_dict(ModelConfig, _config(model_dir.parent / "llm", seed=1))
    other = MusicLLM(cfg).save_pretrained(tmp_path / "other")
    assert _run(other, tmp_path / "in", out) == 2
    assert "model_fingerprint" in capsys.readouterr().err
    # ... but the same model copied elsewhere resumes (identity is the fingerprint).
    moved = Path(shutil.copytree(model_dir, tmp_path / "moved"))
    assert _run(moved, tmp_path / "in", out) == 0
    assert len(lines(out)) == 2


def test_second_writer_is_refused(model_dir, tmp_path, capsys):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "caps.jsonl"
    fd = os.open(str(out) + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert _run(model_dir, tmp_path / "in", out) == 2
        assert "another caption job" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert _run(model_dir, tmp_path / "in", out) == 0


def test_duplicate_records_are_collapsed_on_resume(model_dir, tmp_path):
    make_inputs(tmp_path / "in", 2)
    out = tmp_path / "caps.jsonl"
    assert _run(model_dir, tmp_path / "in", out) == 0
    recs = lines(out)
    bad = dict(recs[0], error="old failure", caption=None, segments=[])
    C.rewrite_records(out, [bad, *recs])
    assert _run(model_dir, tmp_path / "in", out) == 0
    after = lines(out)
    assert sorted(r["id"] for r in after) == ["clip00.wav", "clip01.wav"]
    assert all(r["error"] is None for r in after)
