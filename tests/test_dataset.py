"""Dataset, collator and batch order: labels on assistant turns, truncation, padding,
length grouping, seeded and resumable order, rank sharding, worker safety, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mullm.config import load_model_config
from mullm.data.dataset import Collator, ConversationDataset, MixtureBatches, Source, media_specs
from mullm.errors import DataError
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm
from mullm.train.toydata import make_toy_collection, toy_conversations


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[MusicLLM, Path]:
    work = tmp_path_factory.mktemp("ds")
    llm = make_tiny_llm(work / "llm")
    meta = make_toy_collection(work / "toy", n=6, duration_s=1.0)
    conv = toy_conversations(meta, work / "conv.jsonl")
    cfg = load_model_config({"llm": {"name_or_path": str(llm)}, "modalities": {"audio": {
        "encoder": {"name": "spectral", "options": {"n_mels": 16, "n_fft": 1024}},
        "adapter": {"name": "linear", "pool": "mean", "pool_frames": 5}}}})
    return MusicLLM(cfg), conv


def test_items_collate_with_assistant_only_labels(env: tuple[MusicLLM, Path]) -> None:
    model, conv = env
    ds = ConversationDataset([Source(str(conv))], media_specs(model))
    assert len(ds) == 18
    item = ds[0]
    assert item["media"]["audio"][0].dim() == 1  # a raw waveform, decoded by the dataset
    batch = Collator(model.processor, max_length=256)([ds[i] for i in range(3)])
    assert batch["ids"] == [ds.items[i].id for i in range(3)]
    labels, ids = batch["labels"], batch["input_ids"]
    for b in range(3):
        lab = labels[b][labels[b] != -100]
        text = model.tokenizer.decode(lab)
        assert ds.items[b].turns[-1]["content"] in text  # the answer is trained ...
        assert "<audio>" not in text and "?" not in text  # ... never the question
    # dynamic padding: the longest row has no padding
    assert int(batch["attention_mask"].sum(1).max()) == ids.shape[1]
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "media")})
    assert torch.isfinite(out["loss"])


def test_truncation_keeps_media(env: tuple[MusicLLM, Path]) -> None:
    model, conv = env
    ds = ConversationDataset([Source(str(conv))], media_specs(model))
    full = Collator(model.processor)([ds[0]])
    n = full["input_ids"].shape[1]
    cut = Collator(model.processor, max_length=n - 2)([ds[0]])
    assert cut["input_ids"].shape[1] == n - 2


def test_batch_order_seeded_resumable_and_sharded() -> None:
    source_of = [0] * 30 + [1] * 10
    lengths = list(np.random.default_rng(0).integers(10, 100, 40))
    a = MixtureBatches(source_of, [1.0, 1.0], 4, seed=3, lengths=lengths)
    b = MixtureBatches(source_of, [1.0, 1.0], 4, seed=3, lengths=lengths)
    it_a, it_b = iter(a), iter(b)
    first = [next(it_a) for _ in range(25)]
    assert first == [next(it_b) for _ in range(25)]
    # start=k continues exactly where batch k would have been
    c = MixtureBatches(source_of, [1.0, 1.0], 4, seed=3, lengths=lengths, start=7)
    it_c = iter(c)
    assert [next(it_c) for _ in range(18)] == first[7:]
    # another seed, another order
    d = iter(MixtureBatches(source_of, [1.0, 1.0], 4, seed=4, lengths=lengths))
    assert [next(d) for _ in range(5)] != first[:5]
    # weights 1:1 over sources of 30 and 10 samples -> about half the samples from each
    flat = [i for bt in first for i in bt]
    frac = sum(i >= 30 for i in flat) / len(flat)
    assert 0.35 < frac < 0.65
    # length grouping: batches are much more uniform than random ones
    spread = np.mean([np.ptp([lengths[i] for i in bt]) for bt in first])
    rand = MixtureBatches(source_of, [1.0, 1.0], 4, seed=3, lengths=None)
    it_r = iter(rand)
    spread_r = np.mean([np.ptp([lengths[i] for i in next(it_r)]) for _ in range(25)])
    assert spread < 0.5 * spread_r
    # two ranks split every global batch of 2 x 2 without overlap
    r0 = iter(MixtureBatches(source_of, [1.0, 1.0], 2, seed=3, rank=0, world_size=2))
    r1 = iter(MixtureBatches(source_of, [1.0, 1.0], 2, seed=3, rank=1, world_size=2))
    one = iter(MixtureBatches(source_of, [1.0, 1.0], 4, seed=3))
    for _ in range(10):
        assert next(r0) + next(r1) == next(one)


def test_workers_give_the_same_batches(env: tuple[MusicLLM, Path]) -> None:
    model, conv = env
    ds = ConversationDataset([Source(str(conv))], media_specs(model))
    coll = Collator(model.processor, 256)

    def batches(workers: int) -> list:
        sampler = MixtureBatches(ds.source_of, [1.0], 4, seed=0, lengths=ds.lengths(model))
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=coll,
                                             num_workers=workers,
                                             generator=torch.Generator().manual_seed(0))
        it = iter(loader)
        return [next(it) for _ in range(5)]

    for x, y in zip(batches(0), batches(2)):
        assert x["ids"] == y["ids"]
        assert torch.equal(x["input_ids"], y["input_ids"])
        assert torch.equal(x["media"]["audio"].values, y["media"]["audio"].values)


def test_bad_input_is_named(env: tuple[MusicLLM, Path], tmp_path: Path) -> None:
    model, conv = env
    bad = tmp_path / "bad.jsonl"
    rows = conv.read_text().splitlines()
    bad.write_text(rows[0] + "\n{not json\n" + rows[1] + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        ConversationDataset([Source(str(bad))], media_specs(model))
    ds = ConversationDataset([Source(str(bad))], media_specs(model), skip_bad=True,
                             errors_path=tmp_path / "errors.jsonl")
    assert len(ds) == 2
    assert "bad.jsonl:2" in json.loads((tmp_path / "errors.jsonl").read_text())["input"]
    with pytest.raises(DataError, match="no usable conversation with split='nope'"):
        ConversationDataset([Source(str(conv), split="nope")], media_specs(model))
    # a broken audio file is reported with the conversation id
    first = json.loads(rows[0])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    first["audio"] = [str(broken)]
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(first) + "\n")
    ds = ConversationDataset([Source(str(one))], media_specs(model))
    with pytest.raises(DataError, match=first["id"]):
        ds[0]


def test_cached_features_are_served_by_stored_key_without_touching_audio(
        env: tuple[MusicLLM, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mullm.audio
    import mullm.features.cache
    from mullm.audio import synth_clip, write_wav
    from mullm.features import extract_features
    from mullm.processor import Features

    model, _ = env
    conv = toy_conversations(make_toy_collection(tmp_path / "toy", n=3, duration_s=1.0),
                             tmp_path / "conv.jsonl")
    audio = sorted(str(p) for p in (tmp_path / "toy" / "audio").glob("*.wav"))
    enc = model.encoders["audio"]
    extract_features(enc, audio, tmp_path / "feats", progress=False)
    # Spy on everything that reads an audio file: hashing, decoding, header reads.
    calls: list[str] = []
    for module, name in ((mullm.features.cache, "file_sha256"), (mullm.audio, "load_audio"),
                         (mullm.audio, "audio_info")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))

    def build() -> ConversationDataset:
        return ConversationDataset([Source(str(conv))], media_specs(model),
                                   feature_cache=str(tmp_path / "feats"), encoder=enc)

    ds = build()
    first = [ds[i]["media"]["audio"][0] for i in range(len(ds))]
    ds.lengths(model)
    assert calls == []  # unchanged files: found by their recorded path, never read
    assert all(isinstance(f, Features) for f in first)
    for p in audio:  # LLark-style: once cached, the audio may go
        Path(p).unlink()
    ds = build()
    again = [ds[i]["media"]["audio"][0] for i in range(len(ds))]
    assert calls == []
    assert all(torch.equal(a.hidden_states, b.hidden_states) for a, b in zip(first, again))
    batch = Collator(model.processor)([ds[0], ds[4]])
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "media")})
    assert torch.isfinite(out["loss"])
    # A changed file is hashed (once, at construction) and decoded, never served stale.
    write_wav(audio[0], synth_clip("F#", duration_s=1.0), 16000)
    ds = build()
    assert calls == ["file_sha256"]
    got = [ds[i]["media"]["audio"][0] for i in range(len(ds))]
    fresh = [i for i, c in enumerate(ds.items) if str(c.audio_paths()[0]) == audio[0]]
    assert fresh and all(isinstance(got[i], torch.Tensor) for i in fresh)
    assert sum(isinstance(g, Features) for g in got) == len(got) - len(fresh)
