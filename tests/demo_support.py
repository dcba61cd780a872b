"""Shared pieces of the demo tests: a tiny model whose answers depend on its input, test
clips (good, long and broken), and a spy that records what the model was asked."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import tiny_model_dict

from mullm.audio import synth_clip, write_wav
from mullm.config import ModelConfig, from_dict
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm

WINDOW_S = 4.0  # the tiny model's audio window: a 9 s clip is "long"


def tiny_demo_config(root: Path) -> dict:
    """The tiny model's config: a tiny Llama (written under ``root``), the spectral encoder
    with a 4 s window, a mean-pooled MLP adapter."""
    cfg = tiny_model_dict(make_tiny_llm(root / "llm"), encoder="spectral", policy="frozen")
    audio = cfg["modalities"]["audio"]
    audio["encoder"] = {"name": "spectral", "max_duration_s": WINDOW_S}
    audio["adapter"].update(pool="mean", pool_frames=8)
    return cfg


def tiny_demo_model(root: Path) -> MusicLLM:
    """A tiny Llama + spectral encoder + pooled MLP, with lively weights.

    At the usual init (std 0.02) a random LLM's greedy answer is the same token whatever it
    is asked; scaling its projections makes answers depend on the prompt, the audio and the
    history, so a test can tell whose answer is whose.
    """
    model = MusicLLM(from_dict(ModelConfig, tiny_demo_config(root)))
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if name.endswith("proj.weight"):
                p.mul_(10.0)
    return model.eval()


def write_clips(folder: Path) -> dict[str, Path]:
    """Good clips and the broken files the issue names, by role."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "c_major": write_wav(folder / "c_major.wav", synth_clip("C", duration_s=2.0), 16000),
        "f_minor": write_wav(folder / "f_minor.wav",
                             synth_clip("F#", "minor", tempo_bpm=140, duration_s=3.0,
                                        timbre="square", seed=3), 22050),
        "long": write_wav(folder / "long.wav", synth_clip("G", duration_s=9.0), 16000),
    }
    (folder / "notes.wav").write_text("these are my notes, not audio\n" * 20)
    out["text_as_wav"] = folder / "notes.wav"
    (folder / "empty.wav").write_bytes(b"")
    out["empty"] = folder / "empty.wav"
    ogg = folder / "full.ogg"
    sf.write(str(ogg), synth_clip(duration_s=3.0), 16000, format="OGG", subtype="VORBIS")
    data = ogg.read_bytes()
    (folder / "cut.ogg").write_bytes(data[: len(data) // 2])
    out["truncated_ogg"] = folder / "cut.ogg"
    # An MPEG-4 audio header (ftyp M4A) and AAC-like payload: no decoder here reads it.
    rng = np.random.default_rng(0)
    (folder / "song.m4a").write_bytes(
        b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + rng.bytes(4000))
    out["m4a"] = folder / "song.m4a"
    return out


class ModelSpy:
    """Wraps a model's ``generate_text`` and ``generate`` to record every call.

    ``calls`` holds (conversation, media) per sample of every ``generate_text`` batch;
    ``new_tokens`` the
    number of tokens each ``generate`` produced. ``meet`` (a barrier) makes generations wait
    for each other, to prove they run at the same time; ``token_delay_s`` slows each token
    (a slow model, for the Stop test).
    """

    def __init__(self, model: MusicLLM) -> None:
        self.model = model
        self.calls: list[tuple[list[dict], dict]] = []
        self.new_tokens: list[int] = []
        self.meet: threading.Barrier | None = None
        self.token_delay_s = 0.0
        self._text = model.generate_text
        self._gen = model.generate
        model.generate_text = self._generate_text  # instance attributes win over methods
        model.generate = self._generate

    def _generate_text(self, conversations: list, media: list | None = None,
                       **kwargs: Any) -> list[str]:
        for i, conversation in enumerate(conversations):
            self.calls.append((conversation, media[i] if media else {}))
        if self.meet is not None and kwargs.get("streamer") is not None:
            self.meet.wait(timeout=30)
        return self._text(conversations, media, **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        from transformers import StoppingCriteria, StoppingCriteriaList

        delay = self.token_delay_s
        if delay:
            class Slow(StoppingCriteria):
                def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                             **kw: Any) -> torch.Tensor:
                    time.sleep(delay)
                    return torch.zeros(input_ids.shape[0], dtype=torch.bool)

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [*(kwargs.get("stopping_criteria") or []), Slow()])
        ids = self._gen(*args, **kwargs)
        self.new_tokens.append(int(ids.shape[1]))
        return ids

    def last_chat(self) -> tuple[list[dict], dict]:
        """The last streamed (chat) call: the one with the user's own message last."""
        return self.calls[-1]
