"""Streaming replies: the pieces join to chat()'s answer, errors surface, no hangs."""

from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.errors import AudioError  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.streaming import stream_chat, stream_to  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> MusicLLM:
    root = tmp_path_factory.mktemp("stream")
    llm = make_tiny_llm(root / "llm")
    cfg = {"llm": {"name_or_path": str(llm)},
           "modalities": {"audio": {
               "encoder": {"name": "spectral", "max_duration_s": 4.0},
               "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean",
                           "pool_frames": 8}}}}
    return MusicLLM(from_dict(ModelConfig, cfg))


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("wav") / "c.wav"
    return str(write_wav(path, synth_clip(duration_s=1.0), 16000))


def test_pieces_join_to_the_chat_answer(model, wav):
    history = [{"role": "user", "content": "<audio> What is it?"},
               {"role": "assistant", "content": "music"}]
    pieces = list(stream_chat(model, "More?", audio=wav, history=history, max_new_tokens=8))
    assert len(pieces) >= 1
    want = model.chat("More?", audio=wav, history=history, max_new_tokens=8)
    assert "".join(pieces).rstrip() == want


def test_text_only_and_stream_to(model):
    got: list[str] = []
    text = stream_to(model, "hello", write=got.append, max_new_tokens=5)
    assert text == "".join(got).rstrip() == model.chat("hello", max_new_tokens=5)


def test_errors_reach_the_caller_without_hanging(model, tmp_path):
    with pytest.raises(AudioError, match="not found"):
        list(stream_chat(model, "x", audio=str(tmp_path / "missing.wav"), timeout_s=60))
    with pytest.raises(ValueError, match="num_beams"):
        list(stream_chat(model, "x", num_beams=2))


def test_concurrent_streams_each_hear_their_own_clip(model, tmp_path):
    """Three threads stream on one model at once, each with another clip: each gets exactly
    the answer its clip gives alone (the media state is per call, not on the model)."""
    import torch

    from mullm.audio import synth_clip

    waves = [torch.from_numpy(synth_clip(duration_s=1.0, seed=s)).float() * (1 + s)
             for s in range(3)]
    alone = [model.chat("Describe.", audio=w, max_new_tokens=6) for w in waves]
    results: dict[int, str] = {}
    start = threading.Barrier(3)

    def worker(i: int) -> None:
        start.wait()
        results[i] = "".join(stream_chat(model, "Describe.", audio=waves[i], max_new_tokens=6))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i].rstrip() for i in range(3)] == alone
