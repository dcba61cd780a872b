"""Tiny seeded stand-ins for tests, benchmarks and the CI-sized quickstart.

Nothing here downloads: the tiny LLM is a random model built from a config, written to a
local folder with a byte-level BPE tokenizer trained in-process, so it exercises the same
``from_pretrained`` path a real checkpoint folder does.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mullm.outputs.decoders.standin import (  # noqa: F401 - test helpers live on here
    builds_once,
    corpus_text,
    make_tiny_musicgen,
    make_tiny_t5_tokenizer,
    save_atomically,
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
    tok.train_from_iterator(corpus_text(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|pad|>", bos_token=None)


@builds_once()
def make_tiny_llm(out_dir: str | Path, arch: str = "llama", hidden_size: int = 64,
                  num_layers: int = 4, num_heads: int = 4, num_kv_heads: int = 2,
                  vocab_size: int = 400, seed: int = 0, chat_template: bool = True) -> Path:
    """Write a tiny random causal LM ("llama", "qwen2", "mistral", "gemma3") and tokenizer
    to ``out_dir``; return the folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir = Path(out_dir)
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


# ------------------------------------------------------------------ tiny encoders, every family

# Tiny random configurations of every encoder family, as the encoder tests build them. Real
# geometry is kept where the family fixes it (laion_clap's HTSAT-tiny reads 10 s windows at
# 48 kHz; it is the one slow family on a CPU).
_TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, image_size=32, patch_size=8)
_CROP32 = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
_TINY_CLAP = dict(spec_size=64, num_mel_bins=16, patch_embeds_hidden_size=16, hidden_size=32,
                  depths=[1, 1], num_attention_heads=[2, 4], window_size=4, projection_dim=24,
                  num_classes=10)
_TINY_CLAP_FE = dict(feature_size=16, max_length_s=1, truncation="rand_trunc",
                     padding="repeatpad")
# Jukebox: 8 samples per top-level token, 64-token context (512-sample windows), 4 blocks.
_TINY_VQ = dict(downs_t=(1, 1, 1), strides_t=(2, 2, 2), emb_width=8, l_bins=32, width=8,
                depth=1)
_TINY_PRIOR = dict(n_ctx=64, prior_width=16, prior_depth=4, heads=2, blocks=8, y_bins=(4, 6),
                   t_bins=8)
_TINY_OPEN_CLIP = dict(embed_dim=32, vision_cfg=dict(image_size=32, layers=2, width=64,
                                                     patch_size=8, head_width=32),
                       text_cfg=dict(context_length=16, vocab_size=100, width=32, heads=2,
                                     layers=1))
# Samples of the longest tiny audio item per family: about half a second, or a few windows
# where the family's window is short (Jukebox's tiny prior reads 512-sample windows).
_TINY_AUDIO_SAMPLES = {"spectral": 8000, "tiny_audio": 8000, "mert": 12000, "clap": 24000,
                       "laion_clap": 48000, "jukebox": 1200}

#: Every encoder family with a tiny configuration, and the model modality it serves.
TINY_ENCODER_MODALITY = {
    "spectral": "audio", "tiny_audio": "audio", "mert": "audio", "clap": "audio",
    "laion_clap": "audio", "jukebox": "audio", "tiny_image": "image", "clip": "image",
    "vit": "image", "open_clip": "image", "vivit": "video",
}


@builds_once()
def make_tiny_mert(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random MERT-style checkpoint folder (HuBERT weights, config.json with
    MERT's 320-sample conv stride, preprocessor_config.json at 24 kHz); return the folder."""
    import json

    from transformers import HubertConfig, HubertModel

    out_dir = Path(out_dir)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, conv_dim=[16] * 7,
                       conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                       feat_extract_norm="group", vocab_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HubertModel(cfg)
    model.save_pretrained(out_dir)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
         "do_normalize": True, "padding_side": "right", "padding_value": 0.0,
         "return_attention_mask": True, "sampling_rate": 24000}))
    return out_dir


def tiny_encoder_config(name: str, work_dir: str | Path) -> dict:
    """An encoder config mapping (``name``, ``options``, ``checkpoint``) that builds encoder
    family ``name`` with tiny random weights and no download; ``work_dir`` receives the one
    family that needs files (MERT's checkpoint folder).

    Raises:
        ValueError: ``name`` is not a family in ``TINY_ENCODER_MODALITY``.
    """
    options: dict[str, dict] = {
        "clap": {"audio_config": _TINY_CLAP, "feature_extractor": _TINY_CLAP_FE},
        "laion_clap": {"random_init": True},
        "jukebox": {"random_init": True, "layer": 3, "vqvae_hparams": _TINY_VQ,
                    "prior_hparams": _TINY_PRIOR, "pool_rate_hz": 441.0},
        "clip": {"vision_config": _TINY_VISION, "image_processor": _CROP32},
        "vit": {"vit_config": _TINY_VISION,
                "image_processor": {"size": {"height": 32, "width": 32}}},
        "vivit": {"vivit_config": dict(_TINY_VISION, num_frames=4, tubelet_size=[2, 8, 8]),
                  "image_processor": _CROP32},
        "open_clip": {"model": "ViT-B-32", "model_kwargs": _TINY_OPEN_CLIP},
    }
    if name not in TINY_ENCODER_MODALITY:
        raise ValueError(f"no tiny configuration for encoder family {name!r}; known: "
                         f"{sorted(TINY_ENCODER_MODALITY)}")
    cfg: dict = {"name": name, "options": dict(options.get(name, {}))}
    if name == "mert":
        cfg["checkpoint"] = str(make_tiny_mert(Path(work_dir) / "tiny-mert"))
    return cfg


def tiny_media_item(encoder: torch.nn.Module, fraction: float = 1.0,
                    seed: int = 0) -> torch.Tensor:
    """One random input item for a tiny encoder built from ``tiny_encoder_config``: a
    waveform (samples,) at its sample rate (``fraction`` of the family's tiny length), an
    image (3, H, W) at its input size, or a video clip (frames, 3, H, W).

    Raises:
        ValueError: ``fraction`` is not in (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    gen = torch.Generator().manual_seed(seed)
    if encoder.modality == "audio":
        n = max(1, int(_TINY_AUDIO_SAMPLES[encoder.config.name] * fraction))
        return 0.1 * torch.randn(n, generator=gen)
    spec = getattr(encoder, "image_spec", None)
    h, w = spec.out_size if spec is not None else (encoder.image_size,) * 2
    if encoder.modality == "video":
        return torch.randn(int(encoder.sample_rate), 3, h, w, generator=gen)
    return torch.randn(3, h, w, generator=gen)


# ------------------------------------------------------------------ music-output stand-ins


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
    tok.train_from_iterator(corpus_text(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=max_length)



@builds_once("model_index.json")
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
    save_atomically(out_dir, pipe.save_pretrained)
    return out_dir


@builds_once()
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
    tok = make_tiny_roberta_tokenizer()
    text = ClapTextConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_hidden_layers=1, vocab_size=len(tok), projection_dim=24,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, max_position_embeddings=80)
    audio = ClapAudioConfig(**_TINY_CLAP)  # the tiny "clap" encoder's audio tower
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                     projection_dim=24)).eval()
    fe = ClapFeatureExtractor(**_TINY_CLAP_FE)

    def write(d: Path) -> None:
        model.save_pretrained(d)
        fe.save_pretrained(d)
        tok.save_pretrained(d)

    save_atomically(out_dir, write)
    return out_dir
