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


# ------------------------------------------------------------------ music-output stand-ins


def _corpus_text() -> list[str]:
    return [_WORDS * 3, _WORDS.upper(), "0 1 2 3 4 5 6 7 8 9 . , ? ! : ; - ' \" / ( )"]


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
    tok.train_from_iterator(_corpus_text(), trainer=trainer)
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def make_tiny_roberta_tokenizer(vocab_size: int = 400, max_length: int = 77) -> object:
    """A RoBERTa (byte-level BPE) tokenizer trained in-process, as CLAP's text side uses."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus_text(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=max_length)



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
    if (out_dir / "config.json").is_file():
        return out_dir
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
    _save_atomically(out_dir, lambda d: (model.save_pretrained(d), tok.save_pretrained(d)))
    return out_dir


def _save_atomically(out_dir: Path, write: object) -> None:
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


def make_tiny_audioldm2(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random diffusers ``AudioLDM2Pipeline`` (the sizes of diffusers' own fast
    tests: 16 kHz vocoder, a 2-block UNet, 2-layer CLAP / T5 / GPT-2) with in-process
    tokenizers to ``out_dir``, loadable with ``AudioLDM2Pipeline.from_pretrained``; return it.

    Raises:
        ImportError: diffusers is not installed (``pip install 'mullm[outputs]'``).
    """
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    out_dir = Path(out_dir)
    if (out_dir / "model_index.json").is_file():
        return out_dir
    roberta, t5_tok = make_tiny_roberta_tokenizer(), make_tiny_t5_tokenizer()
    t5_tok.model_max_length = 77
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = AudioLDM2UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=([None, 16, 32], [None, 16, 32]))
        vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=1, out_channels=1,
                            down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4)
        text = ClapTextConfig(hidden_size=16, intermediate_size=37, num_attention_heads=2,
                              num_hidden_layers=2, vocab_size=len(roberta), projection_dim=16,
                              bos_token_id=roberta.bos_token_id,
                              eos_token_id=roberta.eos_token_id,
                              pad_token_id=roberta.pad_token_id)
        audio = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64,
                                intermediate_size=37, depths=[2, 2], num_attention_heads=[2, 2],
                                num_hidden_layers=2, hidden_size=192, projection_dim=16,
                                patch_size=2, patch_stride=2, patch_embed_input_channels=4)
        clap = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                    projection_dim=16))
        t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_ff=37, d_kv=8,
                                     num_heads=2, num_layers=2))
        gpt = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=64,
                                         n_ctx=99, n_positions=99, bos_token_id=0,
                                         eos_token_id=0))
        gpt.config.max_new_tokens = 8
        proj = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32,
                                        langauge_model_dim=16)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16,
            upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5,
                             projection_model=proj, language_model=gpt, tokenizer=roberta,
                             tokenizer_2=t5_tok, feature_extractor=ClapFeatureExtractor(
                                 feature_size=64, hop_length=7900),
                             unet=unet, scheduler=scheduler, vocoder=vocoder)
    _save_atomically(out_dir, pipe.save_pretrained)
    return out_dir


def make_tiny_clap(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random transformers ``ClapModel`` (text and audio towers), its feature
    extractor and a RoBERTa tokenizer to ``out_dir``, like an HF CLAP checkpoint; return it."""
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
    )

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tok = make_tiny_roberta_tokenizer()
    text = ClapTextConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_hidden_layers=1, vocab_size=len(tok), projection_dim=24,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, max_position_embeddings=80)
    audio = ClapAudioConfig(spec_size=64, num_mel_bins=16, patch_embeds_hidden_size=16,
                            hidden_size=32, depths=[1, 1], num_attention_heads=[2, 4],
                            window_size=4, projection_dim=24, num_classes=10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                     projection_dim=24)).eval()
    fe = ClapFeatureExtractor(feature_size=16, max_length_s=1, truncation="rand_trunc",
                              padding="repeatpad")

    def write(d: Path) -> None:
        model.save_pretrained(d)
        fe.save_pretrained(d)
        tok.save_pretrained(d)

    _save_atomically(out_dir, write)
    return out_dir
