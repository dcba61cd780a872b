"""Feature cache, `mullm extract` and manifests: the bad-input list in one batch run,
resuming, stale-cache refusal, and cached == online."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mullm.audio import load_audio, pad_batch, synth_clip, write_wav
from mullm.cli import main as cli_main
from mullm.config import EncoderConfig
from mullm.data.manifest import read_manifest
from mullm.encoders import build_encoder
from mullm.errors import DataError
from mullm.features import (
    CachedEncoder,
    FeatureCache,
    FeatureCacheWriter,
    StaleCacheError,
    extract_features,
)


def _spectral(**kw: object) -> torch.nn.Module:
    return build_encoder(EncoderConfig(name="spectral", **kw))


def _good(folder: Path, n: int = 3, sr: int = 16000) -> list[Path]:
    return [write_wav(folder / f"good{i}.wav",
                      synth_clip(key="CDEFGAB"[i % 7], duration_s=1.0 + 0.3 * i,
                                 sample_rate=sr, seed=i), sr)
            for i in range(n)]


def _bad_inputs(folder: Path) -> dict[str, Path]:
    """The issue's bad-input list (the 20-minute file is written at 2 kHz to stay small)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["zero"] = folder / "zero.wav"
    out["zero"].write_bytes(b"")
    out["text"] = folder / "text.wav"
    out["text"].write_text("definitely not a RIFF header\n" * 10)
    ogg = folder / "cut.ogg"
    sf.write(str(ogg), synth_clip(duration_s=4.0), 16000)
    ogg.write_bytes(ogg.read_bytes()[: ogg.stat().st_size // 3])
    out["truncated_ogg"] = ogg
    out["mono_8k"] = write_wav(folder / "mono8k.wav",
                               synth_clip(duration_s=1.0, sample_rate=8000), 8000)
    tone = synth_clip(duration_s=0.5, sample_rate=96000)
    out["surround_96k"] = folder / "surround.wav"
    sf.write(str(out["surround_96k"]), np.stack([tone] * 6, 1), 96000, subtype="FLOAT")
    out["short"] = write_wav(folder / "short.wav", synth_clip(duration_s=0.05), 16000)
    long = folder / "long20min.wav"
    with sf.SoundFile(str(long), "w", 2000, 1, subtype="PCM_16") as f:
        minute = synth_clip(duration_s=60.0, sample_rate=2000, tempo_bpm=120)
        for _ in range(20):
            f.write(minute)
    out["long_20min"] = long
    nan = synth_clip(duration_s=1.0)
    nan[100] = np.nan
    out["nan"] = folder / "nan.wav"
    sf.write(str(out["nan"]), nan, 16000, subtype="FLOAT")
    out["silence"] = write_wav(folder / "silence.wav", np.zeros(16000, np.float32), 16000)
    return out


def test_batch_extract_with_bad_inputs(tmp_path: Path) -> None:
    bad = _bad_inputs(tmp_path / "in")
    good = _good(tmp_path / "in")
    paths = [str(p) for p in [*good, *bad.values()]]
    enc = _spectral()
    out = tmp_path / "cache"
    summary = extract_features(enc, paths, out, batch_size=4, progress=False)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    failed = {Path(e["input"]).name: e["error"] for e in errors}
    assert set(failed) == {"zero.wav", "text.wav", "cut.ogg", "short.wav", "nan.wav"}
    assert "0 bytes" in failed["zero.wav"] and "text.wav" in failed["text.wav"]
    assert "truncated" in failed["cut.ogg"]
    assert "too short" in failed["short.wav"] and "NaN" in failed["nan.wav"]
    for name, msg in failed.items():
        assert name in msg  # every error names its file
    assert summary.extracted == len(paths) - 5 and summary.failed == 5
    cache = FeatureCache(out, enc)
    h, info = cache.get(bad["long_20min"])
    assert info["duration_s"] == pytest.approx(1200.0)
    assert info["num_windows"] == 40  # 30 s windows (max_duration_s) cover every second
    assert h.shape == (1, 30000, enc.hidden_size)  # 25 Hz x 1200 s
    assert cache.get(bad["silence"])[1]["silent"] is True
    assert cache.get(good[0])[1]["silent"] is False
    h8k, info8k = cache.get(bad["mono_8k"])
    assert info8k["native_sample_rate"] == 8000 and h8k.shape[1] == 25
    assert cache.get(bad["surround_96k"])[1]["channels"] == 6


def test_resume_skips_done_items_and_survives_a_crash(tmp_path: Path) -> None:
    good = [str(p) for p in _good(tmp_path / "in", n=4)]
    enc = _spectral()
    out = tmp_path / "cache"
    # Shards of ~0 MiB: each item is flushed at once, as a long run would be.
    calls = []

    def crash_after_two(i: int) -> None:
        calls.append(i)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(enc, good, out, batch_size=1, shard_mb=0, progress=False,
                         on_item=crash_after_two)
    assert len(FeatureCache(out)) == 2
    assert not list(out.glob(".*tmp*"))  # no half-written files in place
    again = extract_features(enc, good, out, batch_size=2, progress=False)
    assert (again.skipped, again.extracted, again.failed) == (2, 2, 0)
    third = extract_features(enc, good, out, progress=False)
    assert (third.skipped, third.extracted) == (4, 0)


def test_changed_file_is_not_served_stale(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", synth_clip("C", duration_s=1.0), 16000)
    enc = _spectral()
    extract_features(enc, [str(path)], tmp_path / "c", progress=False)
    cache = FeatureCache(tmp_path / "c", enc)
    old = cache.get(path)[0]
    write_wav(path, synth_clip("F#", duration_s=1.0), 16000)
    with pytest.raises(KeyError, match="changed"):
        cache.get(path)
    extract_features(enc, [str(path)], tmp_path / "c", progress=False)
    new = FeatureCache(tmp_path / "c").get(path)[0]
    assert not torch.equal(old, new)


def test_stale_cache_is_refused_with_the_difference(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", synth_clip(duration_s=1.0), 16000)
    extract_features(_spectral(), [str(path)], tmp_path / "c", progress=False)
    other = _spectral(frame_rate=50.0)
    with pytest.raises(StaleCacheError, match="frame_rate 25.0 != 50.0"):
        FeatureCache(tmp_path / "c", other)
    with pytest.raises(StaleCacheError, match="options.n_mels 64 != 32"):
        CachedEncoder(_spectral(options={"n_mels": 32}), tmp_path / "c")
    with pytest.raises(StaleCacheError, match="frame_rate 25.0 != 50.0"):
        extract_features(other, [str(path)], tmp_path / "c", progress=False)


@pytest.mark.parametrize("name", ["spectral", "tiny_audio"])
def test_cached_equals_online(tmp_path: Path, name: str) -> None:
    enc = build_encoder(EncoderConfig(name=name))
    sr = enc.sample_rate
    paths = _good(tmp_path / "in", n=3, sr=sr)
    extract_features(enc, [str(p) for p in paths], tmp_path / "c", progress=False)
    cached = CachedEncoder(enc, tmp_path / "c")
    waves = [load_audio(p, sr) for p in paths]
    waves.append(synth_clip("Bb", duration_s=0.7, sample_rate=sr, seed=9))  # not cached
    x, n = pad_batch(waves)
    x, n = torch.from_numpy(x), torch.from_numpy(n)
    a, b = cached(x, n), enc(x, n)
    assert (cached.hits, cached.misses) == (3, 1)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.hidden_states, b.hidden_states, atol=1e-5, rtol=1e-5)
    strict = CachedEncoder(enc, tmp_path / "c", fallback=False)
    with pytest.raises(KeyError, match=r"batch rows \[3\]"):
        strict(x, n)


def test_kept_layers_and_dtype(tmp_path: Path) -> None:
    enc = build_encoder(EncoderConfig(name="tiny_audio", num_layers=4))
    paths = [str(p) for p in _good(tmp_path / "in", n=2)]
    extract_features(enc, paths, tmp_path / "c", layers=[0, -1], dtype="float16",
                     progress=False)
    cache = FeatureCache(tmp_path / "c", enc)
    h, _ = cache.get(paths[0])
    assert cache.layers == [0, 3] and h.shape[0] == 2 and h.dtype == torch.float16
    cached = CachedEncoder(enc, cache)
    assert cached.num_layers == 2
    wave = torch.from_numpy(load_audio(paths[0], 16000))[None]
    out = cached(wave, torch.tensor([wave.shape[1]]))
    online = enc(wave, torch.tensor([wave.shape[1]])).hidden_states[:, [0, 3]]
    torch.testing.assert_close(out.hidden_states.float(), online, atol=2e-2, rtol=2e-2)
    with pytest.raises(StaleCacheError, match="layers"):
        FeatureCacheWriter(tmp_path / "c", enc, layers="all", dtype="float16")


# ---------------------------------------------------------------------------- manifests


def test_manifest_formats(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for sub in ("a", "b"):
        write_wav(root / sub / "song.wav", synth_clip(duration_s=0.2), 16000)
    (root / "a" / "notes.txt").write_text("not audio")
    folder = read_manifest(root)
    # Unique ids despite repeated stems; every file is offered to the decoder (notes.txt
    # will become an error record, not a silent omission).
    assert [i.id for i in folder] == ["a/notes.txt", "a/song.wav", "b/song.wav"]
    assert all(Path(i.path).is_absolute() for i in folder)
    meta = root / "metadata.jsonl"
    meta.write_text('{"id": "x", "audio": "a/song.wav", "key": "C"}\n\n'
                    '{"id": "y", "audio": "b/song.wav"}\n')
    items = read_manifest(meta)
    assert [i.id for i in items] == ["a/song.wav", "b/song.wav"]
    assert items[1].line == 3 and items[0].meta["id"] == "x"
    conv = root / "train.jsonl"
    conv.write_text(json.dumps({"id": "c1", "audio": ["a/song.wav", "b/song.wav"],
                                "turns": [{"role": "user", "content": "<audio>?"}]}) + "\n"
                    + json.dumps({"id": "c2", "audio": ["a/song.wav"], "turns": []}) + "\n"
                    + json.dumps({"id": "c3", "images": ["x.png"], "turns": []}) + "\n")
    assert [i.id for i in read_manifest(conv)] == ["a/song.wav", "b/song.wav"]
    table = root / "list.csv"
    table.write_text("path,label\na/song.wav,1\n" + str(root / "b" / "song.wav") + ",2\n")
    assert [i.id for i in read_manifest(table)] == ["a/song.wav", "b/song.wav"]
    assert len(read_manifest(str(root / "**" / "*.wav"))) == 2
    files = read_manifest([str(root / "a" / "song.wav"), str(root / "b" / "song.wav")])
    assert [i.id for i in files] == ["a/song.wav", "b/song.wav"]


def test_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"audio": "a.wav"}\n{oops\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: malformed JSON"):
        read_manifest(bad)
    bad.write_text('{"audio": "a.wav"}\n{"caption": "x"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: no 'audio' field"):
        read_manifest(bad)
    bad.write_text('{"audio": 3}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: 'audio' must be a path"):
        read_manifest(bad)
    table = tmp_path / "t.csv"
    table.write_text("file\nx.wav\n")
    with pytest.raises(DataError, match=r"t.csv:1: CSV needs an 'audio' or 'path' column"):
        read_manifest(table)
    with pytest.raises(DataError, match="missing.jsonl: manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="gone/: folder not found"):
        read_manifest(f"{tmp_path}/gone/")
    # A missing plain path is an input: the job records "not found" for it.
    assert [i.id for i in read_manifest(tmp_path / "missing")] == ["missing"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lists no audio files"):
        read_manifest(tmp_path / "empty")


# --------------------------------------------------------------------------------- CLI


def test_cli_extract_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    for i, p in enumerate(_good(data, n=2)):
        assert p.exists(), i
    (data / "broken.wav").write_bytes(b"")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "feats"
    rc = cli_main(["extract", "--config", str(repo / "configs/encoders/spectral.yaml"),
                   "--manifest", str(data), "--out", str(out), "--no-progress"])
    text = capsys.readouterr()
    assert rc == 0
    assert "2 extracted, 0 already cached, 1 failed" in text.out
    index = json.loads((out / "index.json").read_text())
    assert index["name"] == "spectral" and index["frame_rate"] == 25.0
    assert index["windowing"] == {"window_s": None} and index["dtype"] == "float32"
    assert index["chunk_s"] == 30.0
    ids = sorted(v["id"] for v in index["items"].values())
    assert ids == ["good0.wav", "good1.wav"]
    rc = cli_main(["extract", "--config", str(repo / "configs/encoders/spectral.yaml"),
                   "--manifest", str(data), "--out", str(out), "--no-progress"])
    assert rc == 0 and "0 extracted, 2 already cached, 1 failed" in capsys.readouterr().out
    # Nothing succeeded -> non-zero.
    rc = cli_main(["extract", "--config", str(repo / "configs/encoders/spectral.yaml"),
                   "--manifest", str(data / "broken.wav"), "--out", str(tmp_path / "x"),
                   "--no-progress"])
    assert rc == 1
    # A model config: its audio encoder is used; overrides apply.
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text("modalities:\n  audio:\n    encoder:\n      name: tiny_audio\n")
    rc = cli_main(["extract", "--config", str(model_yaml), "--manifest", str(data),
                   "--out", str(tmp_path / "m"), "--no-progress", "num_layers=2"])
    assert rc == 0
    assert json.loads((tmp_path / "m" / "index.json").read_text())["num_layers"] == 2


def test_a_failure_of_any_type_fails_only_its_file(tmp_path: Path) -> None:
    paths = [write_wav(tmp_path / f"f{i}.wav", synth_clip(duration_s=d), 16000)
             for i, d in enumerate((0.5, 0.25, 0.75))]
    enc = _spectral()
    encode = enc.forward

    def flaky(x: torch.Tensor, n: torch.Tensor) -> object:
        if int(n.min()) == round(0.25 * enc.sample_rate):  # the 0.25 s file
            raise KeyError("a bug in the encoder")
        return encode(x, n)

    enc.forward = flaky
    summary = extract_features(enc, [str(p) for p in paths], tmp_path / "c", batch_size=2,
                               progress=False)
    assert (summary.extracted, summary.failed) == (2, 1)
    (err,) = [json.loads(x) for x in (tmp_path / "c" / "errors.jsonl").read_text().splitlines()]
    assert err["input"] == str(paths[1]) and "KeyError" in err["error"]
