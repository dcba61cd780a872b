"""The standalone processor: built from a tokenizer and the model config alone, saved and
loaded without the model, pickled as a folder reference, truncation that counts and drops."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_dict

from mullm.config import load_model_config
from mullm.data.dataset import Collator, ConversationDataset, Source, media_specs
from mullm.model import MusicLLM
from mullm.processor import IGNORE_INDEX, MusicProcessor
from mullm.testing import make_tiny_llm
from mullm.train.toydata import make_toy_collection, toy_conversations

CONV = [[{"role": "user", "content": "<audio> Describe it."},
         {"role": "assistant", "content": "slow piano in a minor key"}]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[MusicLLM, Path, Path]:
    work = tmp_path_factory.mktemp("proc")
    llm = make_tiny_llm(work / "llm")
    meta = make_toy_collection(work / "toy", n=6, duration_s=1.0)
    conv = toy_conversations(meta, work / "conv.jsonl")
    cfg = tiny_model_dict(llm, "window_qformer", "splice")
    return MusicLLM(load_model_config(cfg)), conv, llm


def _same(a: dict, b: dict) -> None:
    for k in ("input_ids", "attention_mask", "labels"):
        if k in a or k in b:
            assert torch.equal(a[k], b[k]), k
    assert sorted(a["media"]) == sorted(b["media"])
    for m in a["media"]:
        assert torch.equal(a["media"][m].values, b["media"][m].values)
        assert torch.equal(a["media"][m].sample_index, b["media"][m].sample_index)


def test_built_from_the_config_alone(env: tuple[MusicLLM, Path, Path]) -> None:
    model, _, llm = env
    cfg = load_model_config(tiny_model_dict(llm, "window_qformer", "splice"))
    proc = MusicProcessor.from_model_config(cfg)  # no model anywhere
    media = [{"audio": [torch.randn(7000)]}]
    _same(proc(CONV, media), model.processor(CONV, media))
    # Its placeholder count is the adapter's real token count for that clip.
    batch = proc(CONV, media)
    n = int((batch["input_ids"] == proc.placeholder_ids["audio"]).sum())
    with torch.no_grad():
        _, mask = model.get_media_features("audio", batch["media"]["audio"])
    assert n == int(mask.sum())


def test_saved_with_the_model_and_loaded_alone(env: tuple[MusicLLM, Path, Path],
                                               tmp_path: Path) -> None:
    model, _, _ = env
    model.save_pretrained(tmp_path / "m")
    folder = tmp_path / "m" / "processor"
    saved = json.loads((folder / "processor_config.json").read_text())
    assert saved["processor_class"] == "MusicProcessor"
    assert saved["media"]["audio"]["frame_spec"]["rule"] == "hop"
    assert saved["media"]["audio"]["adapter"]["name"] == "window_qformer"
    proc = MusicProcessor.from_pretrained(folder)
    media = [{"audio": [torch.randn(5000)]}]
    _same(proc(CONV, media), model.processor(CONV, media))
    gen = proc(CONV[:1], media, add_generation_prompt=True, padding_side="left")
    assert "labels" not in gen
    # model.generate takes the processor's output as it is.
    new = model.generate(**proc([CONV[0][:1]], media, add_generation_prompt=True,
                                padding_side="left"), max_new_tokens=3)
    assert new.shape == (1, new.shape[1]) and new.shape[1] <= 3


def test_collator_pickles_to_kilobytes_and_works_in_spawned_workers(
        env: tuple[MusicLLM, Path, Path], tmp_path: Path) -> None:
    model, conv, _ = env
    model.processor.save_pretrained(tmp_path / "proc")
    proc = MusicProcessor.from_pretrained(tmp_path / "proc")
    collate = Collator(proc, max_length=256)
    size = len(pickle.dumps(collate))
    assert size < 4096, size
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert size * 1000 < model_bytes
    ds = ConversationDataset([Source(str(conv))], media_specs(model))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate, num_workers=1,
                                         multiprocessing_context="spawn")
    first = next(iter(loader))
    want = Collator(model.processor, 256)([ds[i] for i in range(3)])
    assert first["ids"] == want["ids"]
    _same(first, want)
    # A processor whose folder changed after pickling is refused on unpickling.
    blob = pickle.dumps(proc)
    other = MusicProcessor(proc.tokenizer, media=proc.media, system_prompt="changed")
    other.save_pretrained(tmp_path / "proc")
    with pytest.raises(RuntimeError, match="changed after"):
        pickle.loads(blob)


def test_truncation_counts_cut_answers_and_drops_emptied_samples(
        env: tuple[MusicLLM, Path, Path]) -> None:
    model, _, _ = env
    proc = model.processor
    wordy = [{"role": "user", "content": "<audio> Describe the music in a few words please."},
             {"role": "assistant", "content": "calm"}]
    terse = [{"role": "user", "content": "<audio> Key?"},
             {"role": "assistant", "content": "C major, slow, piano and strings"}]
    media = [{"audio": [torch.randn(4000)]}, {"audio": [torch.randn(3000)]}]
    full = proc([wordy, terse], media)
    starts = [int((full["labels"][b] != IGNORE_INDEX).nonzero()[0]) for b in range(2)]
    answers = [int((full["labels"][b] != IGNORE_INDEX).sum()) for b in range(2)]
    assert starts[1] + 1 < starts[0]
    # Cut inside the terse sample's answer and before the wordy one's: the wordy sample has
    # nothing left to learn and is left out; every lost answer token is counted.
    out = proc([wordy, terse], media, max_length=starts[1] + 2)
    assert out.dropped == (0,) and out["input_ids"].shape[0] == 1
    assert out["media"]["audio"].sample_index.tolist() == [0]
    assert torch.equal(out["media"]["audio"].values[0, :3000], media[1]["audio"][0])
    assert int((out["labels"][0] != IGNORE_INDEX).sum()) == 2
    assert out.truncated_label_tokens == answers[0] + answers[1] - 2
    # Every sample emptied: nothing is dropped (the batch would be empty), all is counted.
    both = proc([wordy, wordy], [media[0], media[0]], max_length=starts[0])
    assert both.dropped == () and both["input_ids"].shape[0] == 2
    assert both.truncated_label_tokens == 2 * answers[0]
    # The collator names the dropped samples and keeps the ids of the others.
    samples = [{"index": 0, "id": "a", "messages": wordy, "media": media[0]},
               {"index": 1, "id": "b", "messages": terse, "media": media[1]}]
    batch = Collator(proc, max_length=starts[1] + 2)(samples)
    assert batch["dropped_ids"] == ["a"] and batch["ids"] == ["b"]
    assert batch["indices"].tolist() == [1]
    assert batch["truncated_label_tokens"] == out.truncated_label_tokens


def test_placeholder_must_be_one_token(env: tuple[MusicLLM, Path, Path]) -> None:
    _, _, llm = env
    from mullm.llm import load_tokenizer

    cfg = load_model_config(tiny_model_dict(llm, "mlp", "splice"))
    raw = load_tokenizer(cfg.llm)  # the LLM's own tokenizer has no <audio> token
    spec = MusicProcessor.from_model_config(cfg).media
    with pytest.raises(ValueError, match="from_model_config"):
        MusicProcessor(raw, media=spec)
