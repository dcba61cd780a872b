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

ARCHS = ["llama", "qwen2", "mistral", "gemma3"]


@pytest.mark.parametrize("arch", ARCHS)
def test_architectures_with_all_injections(tmp_path: Path, arch: str) -> None:
    llm_dir = make_tiny_llm(tmp_path / arch, arch=arch)
    conv = [[{"role": "user", "content": "<audio> hi"}, {"role": "assistant", "content": "yes"}]]
    wave = torch.randn(4000)
    for injection in ("splice", "xattn", "prefix"):
        model = MusicLLM(load_model_config(tiny_model_dict(llm_dir, "qformer", injection)))
        model.eval()
        batch = model.processor(conv, [{"audio": [wave]}])
        ids, am = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            out = model(ids, am, media=batch["media"])["logits"]
            if injection != "splice":
                # Zero-initialised gates: the LLM's own logits, exactly, on every architecture.
                plain = model.llm(input_ids=ids, attention_mask=am,
                                  position_ids=(am.cumsum(-1) - 1).clamp(min=0)).logits
                assert torch.equal(out, plain)
        model.train()
        loss = model(ids, am, batch["labels"], batch["media"])["loss"]
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        new = model.generate(**model.processor([conv[0][:1]], [{"audio": [wave]}],
                                               add_generation_prompt=True,
                                               padding_side="left"), max_new_tokens=3)
        assert new.shape[0] == 1 and 1 <= new.shape[1] <= 3


@pytest.mark.parametrize("arch", ARCHS)
def test_prefix_queries_are_the_llms_own(tmp_path: Path, arch: str) -> None:
    """Prefix injection recomputes each layer's queries (q_proj, q_norm, rotary embedding) to
    attend to the prefix; they must equal the queries the LLM's attention itself uses, on every
    architecture, or the prefix would attend with wrong positions without any error."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seen: dict[int, torch.Tensor] = {}

    def capture(module, query, key, value, attention_mask, **kw):  # noqa: ANN001, ANN202
        seen[id(module)] = query.detach().clone()
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kw)

    AttentionInterface.register("mullm_capture", capture)
    llm_dir = make_tiny_llm(tmp_path / arch, arch=arch)
    model = MusicLLM(load_model_config(tiny_model_dict(llm_dir, "qformer", "prefix"))).eval()
    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    base.set_attn_implementation("mullm_capture")
    injector = model.injectors["audio"]
    ours: dict[int, torch.Tensor] = {}
    from mullm.llm import attention_module, decoder_layers

    handles = []
    for i in injector.layer_ids:
        attn = attention_module(decoder_layers(model.llm)[i])

        def hook(module, args, kwargs):  # noqa: ANN001, ANN202
            h = args[0] if args else kwargs["hidden_states"]
            ours[id(module)] = injector.queries(module, h, kwargs).detach()

        handles.append(attn.register_forward_pre_hook(hook, with_kwargs=True))
    batch = model.processor([[{"role": "user", "content": "<audio> what key?"}]],
                            [{"audio": [torch.randn(4000)]}], add_generation_prompt=True)
    with torch.no_grad():
        model(batch["input_ids"], batch["attention_mask"], media=batch["media"])
    for h in handles:
        h.remove()
    assert ours and set(ours) <= set(seen)
    for key, q in ours.items():
        torch.testing.assert_close(q, seen[key], atol=1e-5, rtol=1e-5)


def test_prefix_refuses_fused_qkv_at_build(tmp_path: Path) -> None:
    """GPT-2's attention fuses q/k/v in c_attn: refused when the model is built, naming it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from mullm.errors import ConfigError

    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=400, n_positions=128)
    llm = GPT2LMHeadModel(cfg)
    tok_dir = make_tiny_llm(tmp_path / "tok")
    tok = load_tokenizer(LLMConfig(name_or_path=str(tok_dir)))
    mcfg = load_model_config(tiny_model_dict(tok_dir, "qformer", "prefix", policy="frozen"))
    with pytest.raises(ConfigError, match="c_attn"):
        MusicLLM(mcfg, llm=llm, tokenizer=tok, base_fingerprint="x")


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
    # Untrained adapters, so only the form is checked: words, at most 8 tokens.
    n = len(mm.tokenizer(reply, add_special_tokens=False)["input_ids"])
    assert 1 <= n <= 8 and any(ch.isalpha() for ch in reply)


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
