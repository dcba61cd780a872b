"""Closed-question scoring: choice log-likelihoods (cached prompt == full forward), the
noise control, chance and majority rates, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mullm.config import load_model_config
from mullm.eval.closed import (
    closed_items,
    evaluate_closed,
    format_table,
    noise_like,
    score_choices,
    summarize,
)
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm
from mullm.train.toydata import make_toy_collection


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[MusicLLM, Path]:
    work = tmp_path_factory.mktemp("closed")
    llm = make_tiny_llm(work / "llm")
    meta = make_toy_collection(work / "toy", n=8, duration_s=1.0)
    cfg = load_model_config({"llm": {"name_or_path": str(llm), "policy": "lora"},
                             "system_prompt": "Answer briefly.",
                             "modalities": {"audio": {
                                 "encoder": {"name": "spectral",
                                             "options": {"n_mels": 16, "n_fft": 1024}},
                                 "adapter": {"name": "mlp", "hidden_size": 32,
                                             "pool": "mean", "pool_frames": 5}}}})
    return MusicLLM(cfg), meta


def test_items_follow_the_fixed_questions(env: tuple[MusicLLM, Path]) -> None:
    _, meta = env
    items = closed_items(meta, split="test")
    attrs = {i.attribute for i in items}
    assert {"mode", "tempo_class", "key", "metre"} <= attrs
    for it in items:
        assert it.answer in it.choices and Path(it.audio).is_file()
    key = next(i for i in items if i.attribute == "key")
    assert len(key.choices) == 24
    with pytest.raises(ValueError, match="no clip in split 'nope'"):
        closed_items(meta, split="nope")


def test_cached_prompt_scores_equal_full_forward(env: tuple[MusicLLM, Path]) -> None:
    model, meta = env
    it = next(i for i in closed_items(meta, split="test") if i.attribute == "key")
    wave = model.processor.load_item("audio", it.audio)
    fast = score_choices(model, it.question, it.choices, wave)
    slow = score_choices(model, it.question, it.choices, wave, use_cache=False)
    assert len(fast) == 24
    assert max(abs(a - b) for a, b in zip(fast, slow)) < 1e-4
    assert all(s < 0 for s in fast)


def test_noise_has_the_same_loudness() -> None:
    wave = torch.sin(torch.linspace(0, 500, 16000)) * 0.3
    n1, n2 = noise_like(wave, 1), noise_like(wave, 1)
    assert torch.equal(n1, n2) and n1.shape == wave.shape
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    assert rms(n1) == pytest.approx(rms(wave), rel=0.02)
    assert not torch.equal(noise_like(wave, 2), n1)


def test_summary_rates() -> None:
    rows = [{"attribute": "mode", "choices": ["major", "minor"], "answer": a, "predicted": p,
             "noise_predicted": "major"}
            for a, p in [("major", "major"), ("major", "minor"), ("minor", "minor"),
                         ("major", "major")]]
    s = summarize(rows)["attributes"]["mode"]
    assert s["n"] == 4 and s["accuracy"] == 0.75 and s["noise_accuracy"] == 0.75
    assert s["chance_uniform"] == 0.5 and s["majority_rate"] == 0.75
    assert s["majority_answer"] == "major"


def test_evaluate_with_noise_control(env: tuple[MusicLLM, Path]) -> None:
    model, meta = env
    items = closed_items(meta, split="test")
    model.train()
    result = evaluate_closed(model, items, noise_control=True)
    assert model.training is True  # evaluation ran in eval mode and restored training mode
    for attr, e in result["attributes"].items():
        assert 0 <= e["accuracy"] <= 1 and 0 <= e["noise_accuracy"] <= 1
        assert e["n"] == sum(i.attribute == attr for i in items)
    assert len(result["items"]) == len(items)
    table = format_table(result)
    assert "noise" in table and "majority" in table and "key" in table
    model.eval()
    again = evaluate_closed(model, items, noise_control=False)
    assert model.training is False
    # Scoring is deterministic: the same predictions without the noise control.
    assert [r["predicted"] for r in again["items"]] == [r["predicted"] for r in result["items"]]
