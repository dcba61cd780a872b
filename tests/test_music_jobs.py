"""Music output around the model: generation data (MUCaps / MUEdit converters, the offline
corpus equivalent), the training stage with the projector loss, the resumable
``mullm generate-music`` job, and the projector-vs-text evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import music_model_dict

from mullm.cli import main as cli
from mullm.config import load_model_config
from mullm.data.converters import convert
from mullm.data.schema import read_conversations, write_conversations
from mullm.model import MusicLLM
from mullm.outputs.job import MusicJob, MusicJobError, read_requests

AUD = "[AUD0][AUD1][AUD2][AUD3]"


@pytest.fixture(scope="module")
def model_dir(tiny_llm_dir: Path, tiny_musicgen_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = MusicLLM(load_model_config(music_model_dict(tiny_llm_dir, tiny_musicgen_dir,
                                                        duration_s=0.2)))
    return model.save_pretrained(tmp_path_factory.mktemp("music") / "model")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Toy clips plus time-stretched copies (``mullm augment --mode audio``)."""
    from mullm.data.audio_augment import augment_metadata
    from mullm.train.toydata import make_toy_collection

    root = tmp_path_factory.mktemp("toy")
    meta = make_toy_collection(root / "toy", n=4, duration_s=1.0)
    path, _, bad = augment_metadata(meta, root / "aug" / "metadata.jsonl", ["stretch:0.8"])
    assert bad == 0
    return path


# ----------------------------------------------------------------------------- data


def test_mucaps_and_muedit_converters(tmp_path: Path) -> None:
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(tmp_path / name, np.zeros(1600, np.float32), 16000)
    (tmp_path / "MUCapsCaptions.json").write_text(json.dumps(
        {"a.wav": "A calm piano piece.", "b.wav": "Fast rock drums."}))
    out = tmp_path / "out" / "mucaps.jsonl"
    assert convert("mucaps", tmp_path / "MUCapsCaptions.json", out, output_tokens=4) == (2, 0)
    first = read_conversations(out)[0]
    assert first.task == "generate" and first.turns[0]["content"] == "A calm piano piece."
    assert first.turns[1]["content"] == AUD and first.audio == []
    assert first.target == {"caption": "A calm piano piece.", "audio": "../a.wav"}
    edits = [{"input_file": "a.wav", "output_file": "c.wav", "conversation": [
        {"from": "human", "value": "Make it faster.", "input_modality": "audio"},
        {"from": "gpt", "value": "Here is a music that is fast.", "caption": "Fast piano.",
         "output_modality": "audio"}]},
        {"input_file": "a.wav", "output_file": "missing.wav", "conversation": [
            {"from": "human", "value": "x"}, {"from": "gpt", "value": "y", "caption": "z"}]}]
    (tmp_path / "MUEditInstructions.json").write_text(json.dumps(edits))
    out = tmp_path / "out" / "muedit.jsonl"
    assert convert("muedit", tmp_path / "MUEditInstructions.json", out, skip_bad=True,
                   output_tokens=4) == (1, 1)  # the missing target clip is a bad row
    (edit,) = read_conversations(out)
    assert edit.audio == ["../a.wav"] and edit.target["audio"] == "../c.wav"
    assert edit.turns[0]["content"] == "<audio>\nMake it faster."
    assert edit.turns[1]["content"] == f"Here is a music that is fast. {AUD}"
    errors = (tmp_path / "out" / "errors.jsonl").read_text()
    assert "missing.wav" in errors


def test_offline_generation_and_editing_conversations(toy: Path, tmp_path: Path) -> None:
    from mullm.data.corpus import read_metadata
    from mullm.data.generation import generation_conversations

    rows = read_metadata(toy)
    convs = generation_conversations(rows, meta_dir=toy.parent, out_dir=tmp_path,
                                     output_tokens=4, seed=0)
    t2m = [c for c in convs if c.meta["template"] == "text-to-music"]
    edits = [c for c in convs if c.meta["template"] == "edit"]
    assert len(t2m) == 4 and not any(c.audio for c in t2m)
    for c in t2m:  # the request asks for exactly the music its target caption describes
        assert c.target["caption"][1:].rstrip(".") in c.turns[0]["content"]
    assert all(c.turns[1]["content"].endswith(AUD) and c.target["caption"] for c in convs)
    slower = [c for c in edits if c.meta["direction"] == "forward"]
    assert len(slower) == 4 and len(edits) == 8
    # stretch 0.8 makes the copy slower: original -> copy is "slower", copy -> original not.
    for c in slower:
        ask = c.turns[0]["content"]
        assert "slower" in ask or "BPM" in ask, ask
        assert c.target["audio"].endswith("-stretch0.80.wav") and c.audio[0] != c.target["audio"]
    write_conversations(tmp_path / "gen.jsonl", convs)
    assert len(read_conversations(tmp_path / "gen.jsonl")) == 12  # valid, files exist


def test_training_stage_adds_the_projector_loss(toy: Path, tmp_path: Path, tiny_llm_dir: Path,
                                               tiny_musicgen_dir: Path) -> None:
    from mullm.data.corpus import read_metadata
    from mullm.data.generation import generation_conversations
    from mullm.train import Trainer, load_train_config
    from mullm.train.metrics import read_metrics

    data = tmp_path / "data" / "gen.jsonl"
    write_conversations(data, generation_conversations(
        read_metadata(toy), meta_dir=toy.parent, out_dir=data.parent, output_tokens=4))
    model = music_model_dict(tiny_llm_dir, tiny_musicgen_dir)
    model["music_output"].update(generation_prefix="[generate]")
    cfg = {"model": model,
           "data": {"train": {"gen": {"path": str(data)}}, "max_length": 256},
           "train": {"batch_size": 4, "log_every": 1, "eval_every": None, "save_every": None,
                     "tensorboard": False, "progress": False, "plot": False},
           "stages": {"decoder": {"trainable": ["output_tokens", "output_projector"],
                                  "steps": 4, "lr": 3e-2}},
           "output_dir": str(tmp_path / "run")}
    trainer = Trainer(load_train_config(cfg))
    item = trainer.train_data[0]
    assert item["messages"][0]["content"].startswith("[generate] ")  # the task prefix
    batch = trainer.collate([trainer.train_data[i] for i in range(4)])
    assert batch["music_captions"] and all(batch["music_captions"])
    out = trainer.fit()
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    gen = [m["generation_loss"] for m in metrics]
    assert len(gen) == 4 and gen[-1] < gen[0]
    # The saved model has the trained rows and projector, and reloads with them.
    again = MusicLLM.from_pretrained(out)
    before = MusicLLM(load_model_config(model))
    rows = again.outputs["music"].tokens.output_rows
    assert not rows.detach().equal(before.outputs["music"].tokens.output_rows.detach())


# ----------------------------------------------------------------------- generate-music


def test_generate_music_records_clips_and_bad_requests(model_dir: Path, tmp_path: Path) -> None:
    from mullm.audio import synth_clip, write_wav

    write_wav(tmp_path / "in.wav", synth_clip(duration_s=0.5), 16000)
    (tmp_path / "req.jsonl").write_text(
        json.dumps({"id": "edit", "prompt": "Make it slower.", "audio": "in.wav"}) + "\n"
        + json.dumps({"prompt": ""}) + "\n" + "{not json\n"
        + json.dumps({"id": "lost", "prompt": "Edit this", "audio": "nope.wav"}) + "\n")
    out = tmp_path / "gen"
    argv = ["generate-music", "--model", str(model_dir), "--requests",
            str(tmp_path / "req.jsonl"), "--prompt", "A calm piano piece.", "--out", str(out),
            "--max-new-tokens", "3"]
    assert cli(argv) == 0
    recs = {r["id"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    assert len(recs) == 5
    ok = [r for r in recs.values() if not r["error"]]
    assert {r["id"] for r in ok} == {"edit", read_requests(["A calm piano piece."])[0].id}
    for r in ok:
        wave, sr = sf.read(out / r["audio"])
        assert sr == 32000 and len(wave) == 6400 and r["mode"] == "projector"
        assert r["reply"].endswith(AUD) and r["tokens_emitted"] is False  # appended, said so
    assert "AudioError" in recs["lost"]["error"] and "nope.wav" in recs["lost"]["error"]
    assert sum("must be non-empty" in (r["error"] or "") for r in recs.values()) == 1
    assert sum("malformed JSON" in (r["error"] or "") for r in recs.values()) == 1
    # Rerun: nothing is redone; another mode into the same folder is refused.
    assert cli(argv) == 0 and len((out / "records.jsonl").read_text().splitlines()) == 5
    assert cli(argv + ["--mode", "text"]) == 2
    # --require-tokens: the untrained model never emits them, so that is an error record.
    one = ["generate-music", "--model", str(model_dir), "--prompt", "A calm piano piece."]
    assert cli(one + ["--out", str(tmp_path / "strict"), "--require-tokens",
                      "--max-new-tokens", "2"]) == 1
    rec = json.loads((tmp_path / "strict" / "records.jsonl").read_text())
    assert "no output tokens" in rec["error"] and rec["audio"] is None
    # Text mode: the decoder prompted with the request, no LLM reply.
    assert cli(one + ["--out", str(tmp_path / "text"), "--mode", "text"]) == 0
    rec = json.loads((tmp_path / "text" / "records.jsonl").read_text())
    assert rec["mode"] == "text" and rec["reply"] is None and rec["error"] is None


def test_generate_music_survives_sigkill_without_loss_or_duplicates(model_dir: Path,
                                                                   tmp_path: Path) -> None:
    prompts = [f"Piece number {i}, calm and slow." for i in range(10)]
    (tmp_path / "req.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "mullm.cli", "generate-music", "--model", str(model_dir),
           "--requests", str(tmp_path / "req.txt"), "--out", str(out), "--mode", "text"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if records.is_file() and records.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = records.read_bytes().count(b"\n") if records.is_file() else 0
    assert 0 < killed_at < 10, "the job must be killed mid-run for this test to mean anything"
    # Simulate the worst moment too: a half-written last record.
    with open(records, "ab") as f:
        f.write(b'{"id": "half')
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "partial last line" in res.stderr
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    assert sorted(r["id"] for r in recs) == sorted(r.id for r in read_requests(prompts))
    assert all(r["error"] is None and (out / r["audio"]).is_file() for r in recs)
    assert len(list((out / "audio").glob("*.wav"))) == 10  # no stray temporary files
    assert not list((out / "audio").glob(".*"))


def test_job_refuses_a_model_without_music_output(tiny_llm_dir: Path, tmp_path: Path) -> None:
    from conftest import tiny_model_dict

    plain = MusicLLM(load_model_config(tiny_model_dict(tiny_llm_dir)))
    with pytest.raises(MusicJobError, match="no music_output section"):
        MusicJob(plain, tmp_path / "x")
    with pytest.raises(MusicJobError, match="same id"):
        read_requests(["a", "a"])


# ----------------------------------------------------------------------------- eval


def test_compare_projector_and_text_with_clap_and_honest_fad(model_dir: Path,
                                                             tmp_path: Path) -> None:
    from mullm.testing import make_tiny_clap

    clap = make_tiny_clap(tmp_path / "clap")
    refs = tmp_path / "refs"
    refs.mkdir()
    sf.write(refs / "r.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "eval"
    argv = ["eval-music", "--model", str(model_dir), "--prompt", "A calm piano piece.",
            "--prompt", "Fast drums.", "--out", str(out), "--clap", str(clap),
            "--reference", str(refs), "--max-new-tokens", "3"]
    assert cli(argv) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert set(report["modes"]) == {"projector", "text"}
    for mode in ("projector", "text"):
        m = report["modes"][mode]
        assert m["generated"] == 2 and -1.0 <= m["clap_mean"] <= 1.0
        assert m["fad"] is None  # not faked
        assert len(list((out / mode / "audio").glob("*.wav"))) == 2
    assert all(set(r["clap"]) == {"projector", "text"} for r in report["per_request"])
    assert "frechet-audio-distance" in report["fad_missing"]


def test_fad_glue_reads_the_local_model_and_refuses_minus_one(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import types

    from mullm.eval.music_output import FAD_CHECKPOINT, fad_score

    calls = []

    class FakeFAD:  # stands in for frechet_audio_distance.FrechetAudioDistance
        def __init__(self, **kw: object) -> None:
            calls.append(kw)

        def score(self, background: str, evaluated: str) -> float:
            calls.append((background, evaluated))
            return 1.5 if "good" in evaluated else -1

    monkeypatch.setitem(sys.modules, "frechet_audio_distance",
                        types.SimpleNamespace(FrechetAudioDistance=FakeFAD))
    score, missing = fad_score(tmp_path / "refs", tmp_path / "good", None)
    assert score is None and FAD_CHECKPOINT in missing
    score, missing = fad_score(tmp_path / "refs", tmp_path / "good", tmp_path)
    assert score is None and "is missing" in missing and not calls  # never downloads
    (tmp_path / FAD_CHECKPOINT).write_bytes(b"x")
    assert fad_score(tmp_path / "refs", tmp_path / "good", tmp_path) == (1.5, None)
    assert calls[0]["ckpt_dir"] == str(tmp_path) and calls[0]["model_name"] == "clap"
    score, missing = fad_score(tmp_path / "refs", tmp_path / "bad", tmp_path)
    assert score is None and "-1" in missing
