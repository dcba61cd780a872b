"""Shared fixtures: offline environment, tiny LLM folders, tiny model configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mullm.testing import make_tiny_llm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a chat template, written as a local checkpoint folder."""
    return make_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_model_dict(llm_dir: Path | str, adapter: str = "mlp", injection: str = "splice",
                    policy: str = "lora", encoder: str = "tiny_audio") -> dict:
    """A model config mapping for a tiny model with one audio modality."""
    ad = {"name": adapter, "hidden_size": 32, "num_queries": 4, "num_heads": 4,
          "window_frames": 5, "num_layers": 2}
    inj = {"kind": injection, "every_n_layers": 2, "num_heads": 4, "prefix_len": 4}
    if injection == "prefix":
        inj["top_k_layers"] = 2
        if adapter not in ("qformer", "perceiver"):
            ad["pool"] = "global"
    return {
        "llm": {"name_or_path": str(llm_dir), "policy": policy,
                "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "modalities": {"audio": {
            "encoder": {"name": encoder, "layers": "all", "layer_reduce": "weighted"},
            "adapter": ad, "injection": inj}},
    }


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MusicGen (32 kHz, 50 frames/s, 4 codebooks) saved like a checkpoint."""
    from mullm.testing import make_tiny_musicgen

    return make_tiny_musicgen(tmp_path_factory.mktemp("musicgen") / "tiny-musicgen")


def music_model_dict(llm_dir: Path | str, decoder_dir: Path | str, projector: str = "mlp",
                     decoder: str = "musicgen", **decoder_kw: object) -> dict:
    """``tiny_model_dict`` plus a music_output section: 4 output tokens, a small projector,
    greedy decoding of 0.4 s clips (no sampling: outputs are deterministic)."""
    proj = {"name": projector, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
            "num_encoder_layers": 1, "num_decoder_layers": 1}
    dec = {"name": decoder, "checkpoint": str(decoder_dir), "condition_tokens": 6,
           "duration_s": 0.4, "do_sample": False, "guidance_scale": 3.0,
           "num_inference_steps": 2, "seed": 0, **decoder_kw}
    return {**tiny_model_dict(llm_dir), "music_output": {"num_tokens": 4, "projector": proj,
                                                         "decoder": dec}}
