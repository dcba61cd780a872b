"""Synthetic labelled clips for tests and smoke runs: numpy chord progressions with known
key, mode and tempo, written as a ``metadata.jsonl`` collection plus conversation JSONL.

The real offline corpus (``mullm.data.corpus``) renders General MIDI music; this is the
seconds-fast stand-in with the same file layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mullm.utils.music import tempo_class

KEYS = ("C", "D", "E", "F", "G", "A")
TIMBRE_FAMILY = {"saw": "strings", "square": "reed", "organ": "organ", "sine": "pipe"}


def make_toy_collection(out: str | Path, n: int = 16, seed: int = 0, duration_s: float = 2.0,
                        sample_rate: int = 16000) -> Path:
    """Write ``n`` synthetic clips and ``metadata.jsonl``; return the metadata path."""
    from mullm.audio import synth_clip, write_wav

    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    timbres = sorted(TIMBRE_FAMILY)
    for i in range(n):
        key = KEYS[int(rng.integers(len(KEYS)))]
        mode = "major" if rng.random() < 0.5 else "minor"
        bpm = float(rng.choice([66, 100, 150]))
        timbre = timbres[int(rng.integers(len(timbres)))]
        dur = float(duration_s * rng.uniform(0.75, 1.0))
        wave = synth_clip(key, mode, bpm, dur, sample_rate, timbre=timbre, seed=seed * 1000 + i)
        rel = f"audio/toy{i:04d}.wav"
        write_wav(out / rel, wave, sample_rate)
        rows.append({"id": f"toy{i:04d}", "audio": rel, "key": key, "mode": mode,
                     "tempo_bpm": bpm, "tempo_class": tempo_class(bpm),
                     "time_signature": "4/4", "metre": "duple",
                     "instruments": [timbre], "families": [TIMBRE_FAMILY[timbre]],
                     "style": "toy", "source": "mullm.train.toydata", "piece": f"toy{i:04d}",
                     "duration_s": round(dur, 3),
                     "split": "test" if i % 4 == 3 else "train"})
    meta = out / "metadata.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return meta


def toy_conversations(metadata: str | Path, out: str | Path, split: str | None = None) -> Path:
    """One short QA conversation per clip and attribute (answers of one or two words)."""
    metadata, out = Path(metadata), Path(out)
    rows = [json.loads(x) for x in metadata.read_text().splitlines() if x.strip()]
    lines = []
    for r in rows:
        if split is not None and r["split"] != split:
            continue
        audio = str((metadata.parent / r["audio"]).resolve())
        qa = [("What is the mode?", r["mode"]), ("What key is this?", f"{r['key']} {r['mode']}"),
              ("How fast is it?", r["tempo_class"])]
        for j, (q, a) in enumerate(qa):
            lines.append({"id": f"{r['id']}-q{j}", "audio": [audio], "task": "qa",
                          "split": r["split"], "source": "toy",
                          "turns": [{"role": "user", "content": "<audio>\n" + q},
                                    {"role": "assistant", "content": a}]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


def tiny_train_config(workdir: str | Path, llm_dir: str | Path, steps: int = 6,
                      **train: object) -> dict:
    """A complete, seconds-fast training config (raw data) over toy clips."""
    workdir = Path(workdir)
    meta = workdir / "toy" / "metadata.jsonl"
    if not meta.is_file():
        make_toy_collection(workdir / "toy", n=12, duration_s=1.5)
    conv = workdir / "toy" / "train.jsonl"
    if not conv.is_file():
        toy_conversations(meta, conv)
    settings = {"batch_size": 4, "log_every": 1, "progress": False, "tensorboard": False,
                "plot": False, "seed": 0}
    settings.update(train)
    return {
        "model": {"llm": {"name_or_path": str(llm_dir), "policy": "lora",
                          "lora": {"r": 4, "alpha": 16}},
                  "modalities": {"audio": {
                      "encoder": {"name": "spectral", "options": {"n_mels": 32, "n_fft": 1024}},
                      "adapter": {"name": "mlp", "hidden_size": 64, "pool": "mean",
                                  "pool_rate_hz": 4.0}}}},
        "data": {"train": {"toy": {"path": str(conv)}}, "max_length": 128},
        "train": settings,
        "stages": {"main": {"steps": steps, "lr": 2e-2, "warmup_steps": 1}},
        "output_dir": str(workdir / "run"),
    }
