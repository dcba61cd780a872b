"""Batch captioning: inputs, schema, long tracks, bad files, batching, shards, chat."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mullm import caption as C  # noqa: E402
from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.cli import main as cli  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402

SCHEMA = {"id", "path", "caption", "segments", "error", "duration_s", "model", "prompt",
          "generation"}


def model_dict(llm_dir: Path, max_duration_s: float = 4.0, pool_frames: int = 8) -> dict:
    """A tiny spectral -> pooled MLP -> tiny Llama config."""
    return {"llm": {"name_or_path": str(llm_dir)},
            "modalities": {"audio": {
                "encoder": {"name": "spectral", "max_duration_s": max_duration_s},
                "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean",
                            "pool_frames": pool_frames},
                "injection": {"kind": "splice"}}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("cap")
    llm = make_tiny_llm(root / "llm")
    model = MusicLLM(from_dict(ModelConfig, model_dict(llm)))
    model_dir = model.save_pretrained(root / "model")
    return SimpleNamespace(root=root, llm=llm, model=model, model_dir=model_dir)


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_folder_ids_schema_and_summary_table(env, tmp_path, capsys):
    for sub in ("a", "b"):  # repeated stems in two folders
        write_wav(tmp_path / "in" / sub / "x.wav", synth_clip(duration_s=1.5), 16000)
    write_wav(tmp_path / "in" / "a" / "long.wav", synth_clip(duration_s=9.0), 16000)
    out = tmp_path / "caps.jsonl"
    rc = cli(["caption", "--model", str(env.model_dir), "--input", str(tmp_path / "in"),
              "--out", str(out), "--max-new-tokens", "4", "--batch-size", "3",
              "--no-progress"])
    assert rc == 0
    table = capsys.readouterr().out
    for word in ("items", "succeeded", "failed", "audio hours", "wall time", "throughput"):
        assert word in table
    recs = {r["id"]: r for r in read(out)}
    assert set(recs) == {"a/x.wav", "b/x.wav", "a/long.wav"}
    for r in recs.values():
        assert set(r) == SCHEMA
        assert r["error"] is None and isinstance(r["caption"], str)
        assert len(r["segments"]) >= 1
        assert r["model"] == str(env.model_dir)
        assert r["generation"]["max_new_tokens"] == 4
    long = recs["a/long.wav"]
    # 9 s with the encoder's 4 s window: 0-4, 4-8, 8-9.
    assert [(s["start_s"], s["end_s"]) for s in long["segments"]] == [(0, 4), (4, 8), (8, 9)]
    assert long["duration_s"] == pytest.approx(9.0)
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["generation"]["window_s"] == 4.0 and meta["model_fingerprint"]


def _bad_inputs(d: Path) -> dict[str, str]:
    """Files for every failure mode; value: 'ok' or 'error'."""
    d.mkdir(parents=True)
    (d / "zero.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio, just a text file renamed\n" * 20)
    sf.write(d / "full.ogg", synth_clip(duration_s=3.0), 16000, format="OGG",
             subtype="VORBIS")
    data = (d / "full.ogg").read_bytes()
    (d / "truncated.ogg").write_bytes(data[: len(data) // 2])
    (d / "full.ogg").unlink()
    write_wav(d / "mono8k.wav", synth_clip(duration_s=2.0, sample_rate=8000), 8000)
    six = np.stack([synth_clip(duration_s=1.0, sample_rate=96000, seed=i) for i in range(6)], 1)
    sf.write(d / "six96k.wav", six, 96000)
    write_wav(d / "short.wav", synth_clip(duration_s=0.05), 16000)
    # 20 minutes at a low native rate keeps the file small; it is resampled per window.
    sf.write(d / "twenty_min.wav", synth_clip(duration_s=1200.0, sample_rate=1000), 1000)
    nan = synth_clip(duration_s=1.0)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    write_wav(d / "silence.wav", np.zeros(32000, dtype=np.float32), 16000)
    return {"zero.wav": "error", "text.wav": "error", "truncated.ogg": "error",
            "mono8k.wav": "ok", "six96k.wav": "ok", "short.wav": "error",
            "twenty_min.wav": "ok", "nan.wav": "error", "silence.wav": "ok"}


def test_bad_inputs_become_error_records(env, tmp_path, capsys):
    expect = _bad_inputs(tmp_path / "in")
    # --model config.yaml (untrained adapters); a 120 s window and coarse pooling keep
    # the 20-minute file to 10 segments of 47 tokens each.
    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump(model_dict(env.llm, max_duration_s=120.0, pool_frames=64)))
    out = tmp_path / "caps.jsonl"
    rc = cli(["caption", "--model", str(cfg), "--input", str(tmp_path / "in"), "--out",
              str(out), "--max-new-tokens", "3", "--batch-size", "4", "--no-progress"])
    assert rc == 0
    recs = {r["id"]: r for r in read(out)}
    assert set(recs) == set(expect)
    for name, want in expect.items():
        r = recs[name]
        assert set(r) == SCHEMA
        if want == "ok":
            assert r["error"] is None, (name, r["error"])
            assert r["caption"] is not None and r["segments"]
        else:
            assert r["error"], name
            assert r["caption"] is None and r["segments"] == []
    assert "empty" in recs["zero.wav"]["error"]
    assert "NaN" in recs["nan.wav"]["error"]
    assert "short" in recs["short.wav"]["error"]
    assert "truncated" in recs["truncated.ogg"]["error"].lower()
    long = recs["twenty_min.wav"]
    assert long["duration_s"] == pytest.approx(1200.0)
    assert len(long["segments"]) == 10
    assert long["segments"][-1]["end_s"] == pytest.approx(1200.0)
    assert any("silent" in w for w in recs["silence.wav"]["generation"]["warnings"])
    assert recs["mono8k.wav"]["generation"]["warnings"] == []
    table = capsys.readouterr().out
    assert "succeeded               4" in table and "failed                  5" in table


def test_nothing_succeeded_exits_nonzero(env, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "zero.wav").write_bytes(b"")
    (tmp_path / "in" / "text.wav").write_text("not audio")
    out = tmp_path / "caps.jsonl"
    rc = cli(["caption", "--model", str(env.model_dir), "--input", str(tmp_path / "in"),
              "--out", str(out), "--no-progress"])
    assert rc == 1
    assert len(read(out)) == 2


def test_no_inputs_is_a_usage_error(env, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = cli(["caption", "--model", str(env.model_dir), "--input", str(tmp_path / "empty"),
              "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2
    assert "no audio files" in capsys.readouterr().err


def test_manifest_inputs(env, tmp_path):
    clips = tmp_path / "clips"
    for name in ("p.wav", "q.wav"):
        write_wav(clips / name, synth_clip(duration_s=1.0), 16000)
    (tmp_path / "m.csv").write_text("audio,label\nclips/p.wav,x\nclips/q.wav,y\n")
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"id": "p", "audio": "clips/p.wav", "key": "C"}) + "\n")
    (tmp_path / "conv.jsonl").write_text(json.dumps(
        {"id": "c1", "audio": ["clips/q.wav"], "turns": [
            {"role": "user", "content": "<audio> hi"},
            {"role": "assistant", "content": "x"}]}) + "\n")
    for manifest in ("m.csv", "metadata.jsonl", "conv.jsonl"):
        items = C.resolve_inputs(str(tmp_path / manifest))
        assert all(i.id.startswith("clips/") for i in items)
    recs = C.caption_files(env.model, [str(tmp_path / "m.csv")], max_new_tokens=3)
    assert [r["id"] for r in recs] == ["clips/p.wav", "clips/q.wav"]
    assert all(r["error"] is None for r in recs)


def test_hf_datasets_folder(env, tmp_path, monkeypatch):
    import datasets
    monkeypatch.setenv("MULLM_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(3):
        paths.append(str(write_wav(tmp_path / f"s{i}.wav", synth_clip(duration_s=1.0), 16000)))
    ds = datasets.Dataset.from_dict({"audio": paths}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(tmp_path / "hf")
    items = C.resolve_inputs(str(tmp_path / "hf"))
    assert [i.id for i in items] == ["test/0", "train/0", "train/1", "train/2"]
    # Embedded bytes are written once, by content hash, so a resume sees the same path.
    assert all(Path(i.path).is_file() and "caption-inputs" in i.path for i in items)
    assert C.resolve_inputs(str(tmp_path / "hf"))[1].path == items[1].path
    recs = C.caption_files(env.model, str(tmp_path / "hf"), max_new_tokens=2, batch_size=4)
    assert all(r["error"] is None for r in recs)


def test_api_generation_modes(env, tmp_path):
    for i in range(3):
        write_wav(tmp_path / f"c{i}.wav", synth_clip(duration_s=1.0 + i, seed=i), 16000)
    files = [str(tmp_path / f"c{i}.wav") for i in range(3)]
    greedy = C.caption_files(env.model, files, max_new_tokens=5, batch_size=2)
    assert [r["id"] for r in greedy] == ["c0.wav", "c1.wav", "c2.wav"]
    s1 = C.caption_files(env.model, files, max_new_tokens=5, do_sample=True, seed=7,
                         temperature=0.9, top_p=0.95)
    s2 = C.caption_files(env.model, files, max_new_tokens=5, do_sample=True, seed=7,
                         temperature=0.9, top_p=0.95)
    assert [r["caption"] for r in s1] == [r["caption"] for r in s2]
    assert s1[0]["generation"]["seed"] == 7 and s1[0]["generation"]["do_sample"]
    beams = C.caption_files(env.model, files, max_new_tokens=5, num_beams=2, batch_size=3)
    assert all(r["error"] is None for r in beams)
    concat = C.caption_files(env.model, files[2:], max_new_tokens=3, window_s=1.0,
                             summary="concat")
    assert len(concat[0]["segments"]) == 3 and concat[0]["caption"].startswith("[0:00-0:01]")


def test_chat_with_path_and_history(env, tmp_path):
    wav = str(write_wav(tmp_path / "c.wav", synth_clip(duration_s=1.0), 16000))
    history = [{"role": "user", "content": "<audio> What is this?"},
               {"role": "assistant", "content": "music"}]
    a = env.model.chat("And the tempo?", audio=wav, history=history, max_new_tokens=4)
    b = env.model.chat("And the tempo?", audio=wav, history=history, max_new_tokens=4)
    assert isinstance(a, str) and a == b


def test_chat_command(env, tmp_path, capsys):
    wav = str(write_wav(tmp_path / "c.wav", synth_clip(duration_s=1.0), 16000))
    rc = cli(["chat", "--model", str(env.model_dir), "--audio", wav, "--prompt", "Describe.",
              "--max-new-tokens", "4"])
    assert rc == 0
    plain = capsys.readouterr().out
    assert plain.strip() == env.model.chat("Describe.", audio=wav, max_new_tokens=4)
    rc = cli(["chat", "--model", str(env.model_dir), "--audio", wav, "--prompt", "Describe.",
              "--max-new-tokens", "4", "--stream"])
    assert rc == 0 and capsys.readouterr().out.strip() == plain.strip()
    assert cli(["chat", "--model", str(env.model_dir), "--audio", str(tmp_path / "no.wav"),
                "--prompt", "x"]) == 2


def test_shards_and_merge(env, tmp_path, capsys):
    for i in range(8):
        write_wav(tmp_path / "in" / f"t{i}.wav", synth_clip(duration_s=0.5), 16000)
    base = ["caption", "--model", str(env.model_dir), "--input", str(tmp_path / "in"),
            "--max-new-tokens", "2", "--no-progress"]
    shard_files = []
    for i in range(2):
        f = tmp_path / f"part{i}.jsonl"
        assert cli([*base, "--out", str(f), "--shard", f"{i}/2"]) == 0
        shard_files.append(str(f))
    ids = [[r["id"] for r in read(f)] for f in shard_files]
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == [f"t{i}.wav" for i in range(8)]
    merged = tmp_path / "all.jsonl"
    assert cli(["caption-merge", str(merged), *shard_files]) == 0
    assert [r["id"] for r in read(merged)] == [f"t{i}.wav" for i in range(8)]
    capsys.readouterr()
    # The same shard twice: duplicate ids are refused.
    assert cli(["caption-merge", str(tmp_path / "x.jsonl"), shard_files[0],
                shard_files[0]]) == 2
    assert "duplicate ids" in capsys.readouterr().err
    # A missing shard is refused unless asked for.
    assert cli(["caption-merge", str(tmp_path / "x.jsonl"), shard_files[0]]) == 2
    assert "missing" in capsys.readouterr().err
    assert cli(["caption-merge", str(tmp_path / "x.jsonl"), shard_files[0],
                "--allow-incomplete"]) == 0
    # A shard made with other settings is refused.
    other = tmp_path / "other1.jsonl"
    assert cli([*base[:-3], "--max-new-tokens", "3", "--no-progress", "--out", str(other),
                "--shard", "1/2"]) == 0
    assert cli(["caption-merge", str(tmp_path / "y.jsonl"), shard_files[0], str(other)]) == 2
    assert "max_new_tokens" in capsys.readouterr().err
    with pytest.raises(C.CaptionJobError):
        C.parse_shard("2/2")


# ------------------------------------------------------------------ engine logic, fake model


class FakeModel:
    """Stands in for MusicLLM.generate_text: records batches, answers from the inputs."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.config = from_dict(ModelConfig, {"modalities": {"audio": {"encoder": {
            "name": "spectral", "max_duration_s": 1.0}}}})
        self.encoders = {"audio": SimpleNamespace(sample_rate=16000)}
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on

    def generate_text(self, conversations, media, generation_config=None,  # noqa: ANN001, ANN201
                      seed=None):
        if media is None:
            self.calls.append(("text", len(conversations)))
            return [f"S({c[0]['content'].count(chr(10)) - 1})" for c in conversations]
        self.calls.append(("audio", len(conversations)))
        lengths = [len(m["audio"][0]) for m in media]
        if self.fail_on in lengths:
            raise RuntimeError(f"boom on {self.fail_on}")
        return [f"len{n}" for n in lengths]


def test_segments_batched_across_tracks_and_summaries_in_rounds(tmp_path):
    write_wav(tmp_path / "a.wav", synth_clip(duration_s=10.0), 16000)  # 10 windows of 1 s
    write_wav(tmp_path / "b.wav", synth_clip(duration_s=2.5), 16000)  # 1, 1, 0.5
    write_wav(tmp_path / "c.wav", synth_clip(duration_s=1.04), 16000)  # tail < 0.1 s merges
    fake = FakeModel()
    recs = C.caption_files(fake, [str(tmp_path)], batch_size=4)
    by = {r["id"]: r for r in recs}
    # 14 windows in batches of 4 across tracks: 4, 4, 4, 2.
    assert [n for kind, n in fake.calls if kind == "audio"] == [4, 4, 4, 2]
    assert len(by["a.wav"]["segments"]) == 10
    # 10 segment captions > SUMMARY_GROUP=8: groups of 8 and 2, then one final summary.
    assert by["a.wav"]["caption"] == "S(2)"
    assert by["b.wav"]["caption"] == "S(3)"
    assert [s["caption"] for s in by["b.wav"]["segments"]] == ["len16000", "len16000",
                                                                 "len8000"]
    assert by["c.wav"]["segments"] == [{"start_s": 0.0, "end_s": 1.04, "caption": "len16640"}]
    assert by["c.wav"]["caption"] == "len16640"


def test_generation_failure_isolated_to_its_item(tmp_path):
    write_wav(tmp_path / "good.wav", synth_clip(duration_s=0.5), 16000)
    write_wav(tmp_path / "bad.wav", synth_clip(duration_s=0.25), 16000)
    fake = FakeModel(fail_on=4000)
    recs = {r["id"]: r for r in C.caption_files(fake, [str(tmp_path)], batch_size=2)}
    assert recs["good.wav"]["error"] is None
    assert "boom on 4000" in recs["bad.wav"]["error"]


def test_generation_settings_reach_the_model_and_the_record(tmp_path):
    write_wav(tmp_path / "a.wav", synth_clip(duration_s=0.5), 16000)
    seen = []

    class Recording(FakeModel):
        def generate_text(self, conversations, media, generation_config=None,  # noqa: ANN001, ANN201
                          seed=None):
            seen.append(generation_config.to_diff_dict())
            return super().generate_text(conversations, media, generation_config, seed)

    plain = C.caption_files(Recording(), [str(tmp_path)], max_new_tokens=7)[0]["generation"]
    # The record keeps the keys it always had (older files resume).
    assert list(plain) == ["max_new_tokens", "do_sample", "num_beams", "temperature", "top_p",
                           "seed", "window_s", "hop_s", "summary", "warnings"]
    assert seen[-1]["max_new_tokens"] == 7
    assert seen[-1].get("do_sample", False) is False and seen[-1].get("num_beams", 1) == 1
    extra = C.caption_files(Recording(), [str(tmp_path)], min_new_tokens=3)[0]["generation"]
    assert extra["extra"] == {"min_new_tokens": 3} and seen[-1]["min_new_tokens"] == 3
    with pytest.raises(ValueError, match=r"--top-p=0: must be in \(0, 1\]"):
        C.caption_files(Recording(), [str(tmp_path)], top_p=0)
