"""LLM loading: architectures, chat templates, GGUF conversion and the offline default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_model_dict

from mullm.config import LLMConfig, load_model_config
from mullm.errors import ModelLoadError
from mullm.llm import DEFAULT_CHAT_TEMPLATE, load_llm, load_tokenizer, resolve_llm_path
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma3"])
def test_architectures_with_all_injections(tmp_path: Path, arch: str) -> None:
    llm_dir = make_tiny_llm(tmp_path / arch, arch=arch)
    for injection in ("splice", "xattn", "prefix"):
        model = MusicLLM(load_model_config(tiny_model_dict(llm_dir, "qformer", injection)))
        batch = model.processor([[{"role": "user", "content": "<audio> hi"},
                                  {"role": "assistant", "content": "yes"}]],
                                [{"audio": [torch.randn(4000)]}])
        loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"],
                     batch["media"])["loss"]
        assert torch.isfinite(loss)
        assert len(model.generate([[{"role": "user", "content": "hi"}]], [{"audio": [
            torch.randn(4000)]}], max_new_tokens=3)) == 1


def test_default_chat_template_for_base_models(tmp_path: Path) -> None:
    llm_dir = make_tiny_llm(tmp_path / "base", chat_template=False)
    tok = load_tokenizer(LLMConfig(name_or_path=str(llm_dir)))
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "a"}], tokenize=False)
    assert text == "User: q\nAssistant: a" + tok.eos_token + "\n"
    model = MusicLLM(load_model_config(tiny_model_dict(llm_dir)))
    batch = model.processor([[{"role": "user", "content": "<audio> q"},
                              {"role": "assistant", "content": "a"}]],
                            [{"audio": [torch.randn(3000)]}])
    labelled = batch["input_ids"][0][batch["labels"][0] != -100]
    assert model.tokenizer.decode(labelled).strip() == "a" + tok.eos_token


def test_missing_local_model_is_clear(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_llm_path(LLMConfig(name_or_path=str(tmp_path / "empty")))
    with pytest.raises(ModelLoadError, match="GGUF file .* not found"):
        resolve_llm_path(LLMConfig(name_or_path=str(tmp_path / "x.gguf")))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_llm(LLMConfig(name_or_path="someone/not-cached-model"))


def test_gguf_file_loads_directly(tmp_path: Path) -> None:
    """A .gguf path loads through transformers' gguf_file path (the packaged SmolLM2)."""
    from mullm.llm import _packaged_gguf

    gguf = _packaged_gguf("offline:smollm2-135m-instruct")
    path, name = resolve_llm_path(LLMConfig(name_or_path=str(gguf)))
    assert Path(path, name) == gguf


@pytest.mark.slow
def test_offline_default_loads_and_answers() -> None:
    """The real SmolLM2-135M-Instruct weights: converted once, then a sensible answer."""
    model, tok, fp = load_llm(LLMConfig(name_or_path="offline:smollm2-135m-instruct"))
    assert len(fp) == 16
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
    # The full music model on top of it answers about a synthesised clip.
    cfg = Path(__file__).resolve().parents[1] / "configs/models/offline-default.yaml"
    mm = MusicLLM(load_model_config(cfg), llm=model, tokenizer=tok, base_fingerprint=fp)
    reply = mm.chat("Describe this music.", audio=torch.randn(16000 * 3) * 0.1,
                    max_new_tokens=8)
    assert isinstance(reply, str) and reply


@pytest.mark.parametrize("injection", ["splice", "xattn", "prefix"])
def test_four_bit_base_never_quantises_adapters(tiny_llm_dir: Path, injection: str) -> None:
    import bitsandbytes as bnb

    cfg = tiny_model_dict(tiny_llm_dir, "qformer", injection)
    cfg["llm"]["quantization"] = "4bit"
    model = MusicLLM(load_model_config(cfg))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.llm.modules())
    for part in (model.adapters, model.injectors):
        assert not any(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))
                       for m in part.modules())
        assert all(p.dtype == torch.float32 for p in part.parameters())
    batch = model.processor([[{"role": "user", "content": "<audio> hi"},
                              {"role": "assistant", "content": "yes"}]],
                            [{"audio": [torch.randn(4000)]}])
    model(batch["input_ids"], batch["attention_mask"], batch["labels"],
          batch["media"])["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
