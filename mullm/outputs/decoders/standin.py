"""The offline stand-in decoder ``offline:tiny-random-musicgen``: a tiny random MusicGen
(T5 text encoder, EnCodec at 32 kHz, a 2-layer decoder) and its tokenizer, built from configs
into a folder that loads like a hub checkpoint. It makes noise, not music: it lets the whole
music-output path run (and be tested) with no weights to download."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec

import torch

P = ParamSpec("P")
Builder = Callable[Concatenate[str | Path, P], Path]

# Words for the stand-in tokenizers (also the tiny test LLM's, in mullm.testing).
WORDS = (
    "the music is a slow fast moderate major minor key tempo piano guitar strings brass "
    "organ drums bass synth reed pipe ensemble waltz march chorale rock groove ballad folk "
    "duple triple metre song track clip describe what instrument plays in this with and of "
    "it sounds like bright dark happy sad calm energetic yes no C D E F G A B sharp flat "
    "which family how many beats per minute question answer user assistant system "
)


def corpus_text() -> list[str]:
    return [WORDS * 3, WORDS.upper(), "0 1 2 3 4 5 6 7 8 9 . , ? ! : ; - ' \" / ( )"]


def make_tiny_t5_tokenizer(vocab_size: int = 300) -> object:
    """A T5 (unigram, ``▁`` word marks) tokenizer trained in-process: pad 0, eos 1, unk 2."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>",
                                      special_tokens=["<pad>", "</s>", "<unk>"],
                                      show_progress=False)
    tok.train_from_iterator(corpus_text(), trainer=trainer)
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def builds_once(marker: str = "config.json") -> Callable[[Builder[P]], Builder[P]]:
    """Decorator for the stand-in folder builders, ``build(out_dir, ...) -> out_dir``: the
    decorated builder returns at once, building nothing, when ``out_dir / marker`` is already
    there (tests and benchmarks share these folders, and a build takes seconds)."""
    def decorate(build: Builder[P]) -> Builder[P]:
        @functools.wraps(build)
        def once(out_dir: str | Path, *args: P.args, **kwargs: P.kwargs) -> Path:
            if (Path(out_dir) / marker).is_file():
                return Path(out_dir)
            return build(out_dir, *args, **kwargs)
        return once
    return decorate


def save_atomically(out_dir: Path, write: object) -> None:
    """Write into a temporary sibling folder and rename it, so that a killed build never
    leaves a half folder that later calls would take for a complete one."""
    import shutil
    import tempfile

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        write(tmp)  # type: ignore[operator]
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@builds_once()
def make_tiny_musicgen(out_dir: str | Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """Write a tiny random ``MusicgenForConditionalGeneration`` (T5 2 x 32, EnCodec at 32 kHz
    with MusicGen's real 640-sample hop (50 frames/s) and 4 codebooks of 2048, a 2-layer
    decoder) and a T5 tokenizer to ``out_dir``, loadable like a hub checkpoint; return it."""
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    out_dir = Path(out_dir)
    tok = make_tiny_t5_tokenizer()
    t5 = T5Config(vocab_size=len(tok), d_model=hidden_size, d_ff=2 * hidden_size, d_kv=8,
                  num_heads=4, num_layers=2, pad_token_id=tok.pad_token_id,
                  eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=4, hidden_size=16,
                          codebook_size=2048, codebook_dim=16, upsampling_ratios=[8, 5, 4, 4],
                          target_bandwidths=[2.2], num_residual_layers=1, num_lstm_layers=1)
    # A wider initialisation than MusicGen's 0.02 so that, tiny and random, the decoder's
    # codes still depend on what it cross-attends to (tests compare conditionings).
    dec = MusicgenDecoderConfig(vocab_size=2048, hidden_size=hidden_size, num_hidden_layers=2,
                                num_attention_heads=4, ffn_dim=2 * hidden_size,
                                num_codebooks=codec.num_quantizers,
                                max_position_embeddings=8192, pad_token_id=2048,
                                bos_token_id=2048, decoder_start_token_id=2048,
                                initializer_factor=0.2)
    config = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=codec.to_dict(),
                            decoder=dec.to_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MusicgenForConditionalGeneration(config)
        # EnCodec's codebooks are buffers that start at zero (k-means fills them in
        # training): random ones, or every code would decode to the same sound.
        with torch.no_grad():
            for name, buf in model.audio_encoder.named_buffers():
                if name.endswith("codebook.embed"):
                    buf.normal_()
    model.generation_config.update(pad_token_id=2048, decoder_start_token_id=2048,
                                   bos_token_id=2048)
    save_atomically(out_dir, lambda d: (model.save_pretrained(d), tok.save_pretrained(d)))
    return out_dir




__all__ = ["WORDS", "builds_once", "corpus_text", "make_tiny_musicgen", "make_tiny_t5_tokenizer",
           "save_atomically"]
