"""The CI-sized quickstart runs end to end: corpus, training, closed questions with the noise
control, captions through the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quickstart_tiny(tmp_path: Path) -> None:
    import fluidsynth  # noqa: F401 - a missing dependency must fail, not skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    res = subprocess.run([sys.executable, "-m", "mullm.cli", "quickstart", "--tiny",
                          "--no-progress", "--out", str(tmp_path / "qs")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout
    assert "What the model hears" in out and "Caption attribute words" in out
    assert "noise" in out and "majority" in out
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert summary["closed"] and all("noise_accuracy" in e for e in summary["closed"].values())
    assert summary["captions"] and all(isinstance(c["caption"], str)
                                       for c in summary["captions"])
    # captions are scored by their attribute words, next to the same prompt on noise
    assert set(summary["caption_scores"]) == set(summary["caption_noise_scores"]) != set()
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in summary["caption_scores"].values())
    # training read cached features: the cache holds every clip of the tiny corpus
    assert (Path(summary["feature_cache"]) / "index.json").is_file()
    model_dir = Path(summary["model_dir"])
    assert (model_dir / "trainable.safetensors").is_file() and (model_dir / "lora").is_dir()
    assert (tmp_path / "qs" / "run" / "metrics.jsonl").is_file()
