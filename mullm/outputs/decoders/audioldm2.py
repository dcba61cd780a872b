"""AudioLDM2 through diffusers' ``AudioLDM2Pipeline`` (optional: ``pip install
'mullm[outputs]'``), conditioned on the output projector.

AudioLDM2's UNet cross-attends to two sequences: ``prompt_embeds`` (its T5 encoder's states
of the prompt) and ``generated_prompt_embeds`` (the states its GPT-2 generates from the
projected CLAP and T5 embeddings, ``language_model.config.max_new_tokens`` of them, 8 in the
released pipelines). As in M2UGen, the projector emits both at once as one conditioning token
of width ``n_t5 * d_t5 + n_gpt * d_gpt`` (``n_t5 = condition_tokens``), which is split and
handed to the pipeline as ``prompt_embeds`` / ``generated_prompt_embeds`` (the T5 part with an
all-ones attention mask). The training target is the same packing of the pipeline's own
``encode_prompt`` output for the caption (T5 states zeroed past the caption, padded or cut to
``n_t5``).

Classifier-free guidance: the unconditional branch is AudioLDM2's own, the empty prompt's
embeddings (what the pipeline computes for ``negative_prompt=None``), passed as
``negative_prompt_embeds`` / ``negative_generated_prompt_embeds``; the pipeline mixes the noise
predictions ``uncond + scale * (cond - uncond)``. At scale 1 only the conditional branch runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mullm.outputs.config import MusicDecoderConfig
from mullm.outputs.decoders.base import DTYPES, MusicDecoder, checkpoint_source, load_error


def _pad_tokens(states: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """(B, S, D) states zeroed where ``mask`` is 0, padded with zeros or cut to n tokens."""
    states = states * mask[..., None].to(states.dtype)
    if states.shape[1] >= n:
        return states[:, :n]
    pad = states.new_zeros(states.shape[0], n - states.shape[1], states.shape[2])
    return torch.cat([states, pad], 1)


class AudioLDM2Decoder(MusicDecoder):
    """AudioLDM2 (``cvssp/audioldm2-music``, or any pipeline folder) behind the decoder
    interface.

    Raises:
        ModelLoadError: a pipeline that is not there (offline, nothing is downloaded).
    """

    name = "audioldm2"

    def __init__(self, config: MusicDecoderConfig) -> None:
        super().__init__(config)
        from diffusers import AudioLDM2Pipeline

        source, kw = checkpoint_source(config)
        try:
            pipe = AudioLDM2Pipeline.from_pretrained(source, dtype=DTYPES[config.dtype],
                                                     **kw)
        except (OSError, ValueError) as exc:
            raise load_error("AudioLDM2 pipeline", config.checkpoint, exc) from exc
        pipe.set_progress_bar_config(disable=True)
        for part in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.projection_model,
                     pipe.language_model, pipe.unet, pipe.vocoder):
            part.eval().requires_grad_(False)
        self.pipe = pipe
        self.sample_rate = int(pipe.vocoder.config.sampling_rate)
        self.t5_dim = int(pipe.text_encoder_2.config.d_model)
        self.gpt_dim = int(pipe.language_model.config.n_embd)
        self.gpt_tokens = int(getattr(pipe.language_model.config, "max_new_tokens", 8) or 8)
        self.condition_shape = (1, config.condition_tokens * self.t5_dim
                                + self.gpt_tokens * self.gpt_dim)

    @staticmethod
    def condition_shape_of(config: MusicDecoderConfig) -> tuple[int, int]:
        """(1, n_t5 * d_t5 + n_gpt * d_gpt) from the pipeline's config files."""
        from transformers import AutoConfig

        source, kw = checkpoint_source(config)
        try:
            t5 = AutoConfig.from_pretrained(source, subfolder="text_encoder_2", **kw)
            gpt = AutoConfig.from_pretrained(source, subfolder="language_model", **kw)
        except OSError as exc:
            raise load_error("AudioLDM2 pipeline config", config.checkpoint, exc) from exc
        n_gpt = int(getattr(gpt, "max_new_tokens", 8) or 8)
        return 1, config.condition_tokens * int(t5.d_model) + n_gpt * int(gpt.n_embd)

    def _move(self, device: torch.device) -> None:
        self.pipe.to(device)

    def _pack(self, prompt: torch.Tensor, mask: torch.Tensor, generated: torch.Tensor
              ) -> torch.Tensor:
        t5 = _pad_tokens(prompt.float(), mask, self.config.condition_tokens)
        flat = torch.cat([t5.flatten(1), generated.float().flatten(1)], 1)
        return flat[:, None, :]

    def _unpack(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config.condition_tokens
        flat = condition[:, 0]
        t5 = flat[:, :n * self.t5_dim].reshape(-1, n, self.t5_dim)
        gpt = flat[:, n * self.t5_dim:].reshape(-1, self.gpt_tokens, self.gpt_dim)
        return t5, gpt

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompt, mask, generated = self.pipe.encode_prompt(
            list(texts), self.device, 1, False, max_new_tokens=self.gpt_tokens)
        return prompt, mask, generated

    @torch.no_grad()
    def text_condition(self, texts: list[str]) -> torch.Tensor:
        """The pipeline's own T5 + GPT-2 embedding of ``texts``, packed as (B, 1, D)."""
        return self._pack(*self._encode(texts))

    def _run(self, duration_s: float, seed: int | None, **inputs: Any) -> list[np.ndarray]:
        c = self.config
        with self._seeded(seed) as gen:
            audios = self.pipe(audio_length_in_s=duration_s,
                               num_inference_steps=c.num_inference_steps,
                               guidance_scale=c.guidance_scale, generator=gen,
                               output_type="np", **inputs).audios
        return self._clips(audios, duration_s)

    @torch.no_grad()
    def generate_from_condition(self, condition: torch.Tensor, duration_s: float | None = None,
                                seed: int | None = None) -> list[np.ndarray]:
        """AudioLDM2 with ``prompt_embeds`` / ``generated_prompt_embeds`` from the projector."""
        self._check_condition(condition)
        dtype = self.pipe.text_encoder_2.dtype
        t5, gpt = self._unpack(condition.to(self.device, torch.float32))
        B = t5.shape[0]
        inputs: dict[str, Any] = {
            "prompt_embeds": t5.to(dtype), "generated_prompt_embeds": gpt.to(dtype),
            "attention_mask": torch.ones(B, t5.shape[1], dtype=torch.long, device=self.device)}
        if self.config.guidance_scale > 1:
            # AudioLDM2's own unconditional branch: the empty prompt's embeddings, with its
            # own attention mask (padded to the projector's token count).
            prompt, mask, generated = self._encode([""] * B)
            n = self.config.condition_tokens
            neg_mask = _pad_tokens(mask[..., None].float(), mask, n)[..., 0].long()
            inputs.update(negative_prompt_embeds=_pad_tokens(prompt, mask, n).to(dtype),
                          negative_generated_prompt_embeds=generated.to(dtype),
                          negative_attention_mask=neg_mask)
        return self._run(duration_s or self.config.duration_s, seed, **inputs)

    @torch.no_grad()
    def generate_from_text(self, texts: list[str], duration_s: float | None = None,
                           seed: int | None = None) -> list[np.ndarray]:
        """AudioLDM2 prompted with ``texts`` (its own encoders and guidance)."""
        return self._run(duration_s or self.config.duration_s, seed, prompt=list(texts),
                         max_new_tokens=self.gpt_tokens)


__all__ = ["AudioLDM2Decoder"]
