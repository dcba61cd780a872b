"""Tiny seeded stand-ins for tests, benchmarks and the CI-sized quickstart.

Nothing here downloads: the tiny LLM is a random model built from a config, written to a
local folder with a byte-level BPE tokenizer trained in-process, so it exercises the same
``from_pretrained`` path a real checkpoint folder does.
"""

from __future__ import annotations

from pathlib import Path

import torch

_WORDS = (
    "the music is a slow fast moderate major minor key tempo piano guitar strings brass "
    "organ drums bass synth reed pipe ensemble waltz march chorale rock groove ballad folk "
    "duple triple metre song track clip describe what instrument plays in this with and of "
    "it sounds like bright dark happy sad calm energetic yes no C D E F G A B sharp flat "
    "which family how many beats per minute question answer user assistant system "
)


def _train_tokenizer(vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    text = [_WORDS * 3, _WORDS.upper(), "0 1 2 3 4 5 6 7 8 9 . , ? ! : ; - ' \" / ( )"]
    tok.train_from_iterator(text, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|pad|>", bos_token=None)


def make_tiny_llm(out_dir: str | Path, arch: str = "llama", hidden_size: int = 64,
                  num_layers: int = 4, num_heads: int = 4, num_kv_heads: int = 2,
                  vocab_size: int = 400, seed: int = 0, chat_template: bool = True) -> Path:
    """Write a tiny random causal LM ("llama", "qwen2", "mistral", "gemma3") and tokenizer
    to ``out_dir``; return the folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tok = _train_tokenizer(vocab_size)
    if chat_template:
        tok.chat_template = (
            "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
            "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )
    kwargs = dict(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                  num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  num_key_value_heads=num_kv_heads, max_position_embeddings=512,
                  tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, bos_token_id=None)
    if arch == "gemma3":
        kwargs.update(model_type="gemma3_text", head_dim=hidden_size // num_heads,
                      sliding_window=64, query_pre_attn_scalar=hidden_size // num_heads)
        config = AutoConfig.for_model("gemma3_text", **{k: v for k, v in kwargs.items()
                                                        if k != "model_type"})
    else:
        config = AutoConfig.for_model(arch, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
