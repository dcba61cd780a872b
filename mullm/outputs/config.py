"""The ``music_output`` section of a model config: output tokens, projector, music decoder.

``ModelConfig.music_output`` (``mullm/config.py``) is ``None`` for a model that only reads
music; set, it adds M2UGen's output tokens ``[AUD0]..[AUDn-1]`` to the vocabulary, an output
projector from the LLM's hidden states at those tokens to a music decoder's conditioning
space, and the decoder itself (MusicGen through transformers, or AudioLDM2 through diffusers).

These are plain dataclasses loaded by ``mullm.config.from_dict`` with the same strict typing
as the rest of a model config; ``validate_music_output`` refuses combinations that cannot work.
They live here, not in ``mullm/config.py``, so that file keeps one screenful per section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mullm.errors import ConfigError


@dataclass
class ProjectorConfig:
    """The output projector (``mullm.outputs.projector``).

    ``mlp``: a per-token MLP (``num_layers`` linear layers of ``hidden_size``) to the
    decoder's width, then a learned linear map from the n output tokens to the decoder's
    conditioning length. ``transformer``: M2UGen's projector, a linear layer to
    ``hidden_size``, a ``torch.nn.Transformer`` (``num_encoder_layers`` + ``num_decoder_layers``,
    ``num_heads`` heads, feed-forward 4 x width) whose decoder reads learned queries, one per
    conditioning token, and a linear layer to the decoder's width (M2UGen: 4 + 4 layers,
    width 512, 4 heads).
    """

    name: Literal["mlp", "transformer"] = "mlp"
    hidden_size: int = 512
    num_layers: int = 2
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 4
    dropout: float = 0.0


@dataclass
class MusicDecoderConfig:
    """The music decoder the projector conditions (``mullm.outputs.decoders``).

    ``checkpoint`` is a hub id or a local folder: a transformers MusicGen checkpoint
    (``facebook/musicgen-small`` / ``-medium`` / ``-large``) or a diffusers AudioLDM2 pipeline
    folder (``cvssp/audioldm2-music``); ``offline:tiny-random-musicgen`` builds a tiny MusicGen
    with random weights once into ``$MULLM_CACHE`` (it makes noise: for plumbing and tests).
    The decoder is frozen and never saved with the model (the config references it).
    """

    name: Literal["musicgen", "audioldm2"] = "musicgen"
    checkpoint: str = "facebook/musicgen-small"
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # MusicGen: the text-encoder states the projector emits, and the length the target
    # caption's T5 states are padded or cut to (M2UGen: 128). AudioLDM2: the T5 states of
    # ``prompt_embeds`` (M2UGen: 4); the GPT-2 part has the pipeline's own 8.
    condition_tokens: int = 32
    duration_s: float = 10.0
    # Classifier-free guidance: > 1 runs a real unconditional branch (MusicGen's null
    # condition: zero states, masked out; AudioLDM2: the empty prompt's embeddings) and mixes
    # uncond + scale * (cond - uncond); 1 runs the conditional branch alone.
    guidance_scale: float = 3.0
    do_sample: bool = True
    top_k: int = 250
    temperature: float = 1.0
    num_inference_steps: int = 200        # AudioLDM2 denoising steps
    seed: int | None = None               # None: the global RNG; an int: reproducible clips


@dataclass
class MusicOutputConfig:
    """Output tokens, projector and decoder of a music-generating model (M2UGen-style)."""

    num_tokens: int = 8                   # [AUD0] .. [AUD{num_tokens-1}]
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    decoder: MusicDecoderConfig = field(default_factory=MusicDecoderConfig)
    # Training: the projector output against the decoder's own text-encoder embedding of the
    # target caption, weighted and added to the LM loss.
    loss: Literal["mse", "cosine"] = "mse"
    loss_weight: float = 1.0
    # How clips are conditioned unless a caller says otherwise: "projector" (the LLM's
    # output-token states through the projector) or "text" (the decoder prompted with text).
    mode: Literal["projector", "text"] = "projector"
    # Task prefixes put before the first user message of training conversations: the
    # generation one for task "generate", the understanding one for every other task, so the
    # LLM learns from the request's form when to emit output tokens. None: no prefix.
    # ``mullm generate-music`` puts the generation prefix before its prompts.
    generation_prefix: str | None = None
    understanding_prefix: str | None = None


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate_music_output(cfg: MusicOutputConfig, key: str = "music_output") -> None:
    """Refuse music-output settings that cannot work.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    _check(1 <= cfg.num_tokens <= 64, f"{key}.num_tokens", cfg.num_tokens, "must be in 1..64")
    _check(cfg.loss_weight >= 0, f"{key}.loss_weight", cfg.loss_weight, "must be >= 0")
    p, pk = cfg.projector, f"{key}.projector"
    _check(p.hidden_size >= 1, f"{pk}.hidden_size", p.hidden_size, "must be >= 1")
    _check(p.num_layers >= 1, f"{pk}.num_layers", p.num_layers, "must be >= 1")
    _check(0.0 <= p.dropout < 1.0, f"{pk}.dropout", p.dropout, "must be in [0, 1)")
    if p.name == "transformer":
        _check(p.num_heads >= 1 and p.hidden_size % p.num_heads == 0, f"{pk}.hidden_size",
               p.hidden_size, f"must be divisible by num_heads={p.num_heads}")
        _check(p.num_encoder_layers >= 1, f"{pk}.num_encoder_layers", p.num_encoder_layers,
               "must be >= 1")
        _check(p.num_decoder_layers >= 1, f"{pk}.num_decoder_layers", p.num_decoder_layers,
               "must be >= 1")
    d, dk = cfg.decoder, f"{key}.decoder"
    _check(bool(d.checkpoint.strip()), f"{dk}.checkpoint", d.checkpoint,
           "a hub id, a local folder or offline:tiny-random-musicgen")
    _check(d.condition_tokens >= 1, f"{dk}.condition_tokens", d.condition_tokens,
           "must be >= 1")
    _check(0 < d.duration_s <= 300, f"{dk}.duration_s", d.duration_s, "must be in (0, 300]")
    _check(d.guidance_scale >= 1.0, f"{dk}.guidance_scale", d.guidance_scale,
           "must be >= 1 (1 = the conditional branch alone)")
    _check(d.top_k >= 0, f"{dk}.top_k", d.top_k, "must be >= 0")
    _check(d.temperature > 0, f"{dk}.temperature", d.temperature, "must be > 0")
    _check(d.num_inference_steps >= 1, f"{dk}.num_inference_steps", d.num_inference_steps,
           "must be >= 1")
    if d.name == "audioldm2" and d.checkpoint.startswith("offline:"):
        raise ConfigError(f"{dk}.checkpoint={d.checkpoint!r}: the offline tiny decoder is a "
                          "MusicGen; use decoder.name=musicgen, or an AudioLDM2 pipeline folder")


__all__ = ["MusicDecoderConfig", "MusicOutputConfig", "ProjectorConfig",
           "validate_music_output"]
