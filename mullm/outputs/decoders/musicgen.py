"""MusicGen through transformers' ``MusicgenForConditionalGeneration``, conditioned on the
output projector in place of its T5 text encoder.

MusicGen's decoder cross-attends to the T5 encoder's last hidden states. The projector path
passes its output as ``encoder_outputs`` (the T5 encoder does not run), with an all-ones
encoder mask. Classifier-free guidance is done as MusicGen's own text path does it: the batch
is doubled with a real unconditional half, MusicGen's null condition (zero states with a zero
attention mask, exactly what ``generate`` builds for text prompts), and transformers'
``ClassifierFreeGuidanceLogitsProcessor`` mixes ``uncond + scale * (cond - uncond)`` at every
step. Passing precomputed ``encoder_outputs`` with a guidance scale > 1 and nothing else would
not work: ``generate`` would take both halves for the batch; a dummy ``input_ids`` of the true
batch size fixes the batch, as the text path's token ids do. At scale 1 only the conditional
branch runs.

Durations: MusicGen's codebooks are offset by one step each (the delay pattern), so
``frames + codebooks - 1`` new tokens give ``frames`` audio frames of ``hop`` samples; the
waveform is then cut to exactly the requested length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mullm.errors import ModelLoadError
from mullm.outputs.config import MusicDecoderConfig
from mullm.outputs.decoders.base import DTYPES, MusicDecoder, checkpoint_source, load_error


class MusicGenDecoder(MusicDecoder):
    """MusicGen (small / medium / large, or a tiny random stand-in) from a checkpoint folder
    or hub id.

    Raises:
        ModelLoadError: a checkpoint that is not there, or weights that do not match its config.
    """

    name = "musicgen"

    def __init__(self, config: MusicDecoderConfig) -> None:
        super().__init__(config)
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        source, kw = checkpoint_source(config)
        try:
            model, info = MusicgenForConditionalGeneration.from_pretrained(
                source, dtype=DTYPES[config.dtype], output_loading_info=True, **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kw)
        except OSError as exc:
            raise load_error("MusicGen checkpoint", config.checkpoint, exc) from exc
        bad = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
        if bad:
            raise ModelLoadError(f"{source}: MusicGen weights do not match its config "
                                 f"(missing or mismatched: {bad[:8]})")
        self.model = model.eval().requires_grad_(False)
        cfg = model.config
        self.sample_rate = int(cfg.audio_encoder.sampling_rate)
        self.frame_rate = float(cfg.audio_encoder.frame_rate)
        self.num_codebooks = int(cfg.decoder.num_codebooks)
        self.condition_shape = self.condition_shape_of(config, cfg)

    @staticmethod
    def condition_shape_of(config: MusicDecoderConfig, model_config: Any = None
                           ) -> tuple[int, int]:
        """(condition_tokens, T5 width) from the checkpoint's config.json."""
        if model_config is None:
            from transformers import MusicgenConfig

            source, kw = checkpoint_source(config)
            try:
                model_config = MusicgenConfig.from_pretrained(source, **kw)
            except OSError as exc:
                raise load_error("MusicGen config", config.checkpoint, exc) from exc
        text = model_config.text_encoder
        width = getattr(text, "d_model", None) or text.hidden_size
        return int(config.condition_tokens), int(width)

    def _move(self, device: torch.device) -> None:
        self.model.to(device)

    @torch.no_grad()
    def text_condition(self, texts: list[str]) -> torch.Tensor:
        """T5 states of ``texts`` padded or cut to ``condition_tokens``, zero where the
        caption has no token (MusicGen multiplies its encoder states by the mask too)."""
        T = self.condition_shape[0]
        enc = self.tokenizer(list(texts), padding="max_length", max_length=T, truncation=True,
                             return_tensors="pt").to(self.device)
        states = self.model.text_encoder(input_ids=enc["input_ids"],
                                         attention_mask=enc["attention_mask"]).last_hidden_state
        return (states * enc["attention_mask"][..., None].to(states.dtype)).float()

    def _generation_kwargs(self, duration_s: float) -> dict[str, Any]:
        c = self.config
        frames = max(1, math.ceil(duration_s * self.frame_rate))
        kw: dict[str, Any] = {"max_new_tokens": frames + self.num_codebooks - 1,
                              "do_sample": c.do_sample, "guidance_scale": c.guidance_scale}
        if c.do_sample:
            kw.update(top_k=c.top_k, temperature=c.temperature)
        return kw

    def _waves(self, audio: torch.Tensor, duration_s: float) -> list[np.ndarray]:
        mono = audio.float().mean(1).cpu().numpy()       # (B, channels, N) -> (B, N)
        return self._clips(mono, duration_s)

    @torch.no_grad()
    def generate_from_condition(self, condition: torch.Tensor, duration_s: float | None = None,
                                seed: int | None = None) -> list[np.ndarray]:
        """MusicGen conditioned on the projector output (B, T, D) in place of T5's states."""
        self._check_condition(condition)
        duration_s = duration_s or self.config.duration_s
        dtype = next(self.model.parameters()).dtype
        cond = condition.to(self.device, dtype)
        B, T = cond.shape[:2]
        mask = torch.ones(B, T, dtype=torch.long, device=self.device)
        if self.config.guidance_scale > 1:
            # The unconditional half: MusicGen's null condition (zeros, masked out), the same
            # one its text path concatenates for guidance.
            cond = torch.cat([cond, torch.zeros_like(cond)])
            mask = torch.cat([mask, torch.zeros_like(mask)])
        batch_ids = torch.zeros(B, 1, dtype=torch.long, device=self.device)
        with self._seeded(seed):
            audio = self.model.generate(input_ids=batch_ids, encoder_outputs=(cond,),
                                        attention_mask=mask,
                                        **self._generation_kwargs(duration_s))
        return self._waves(audio, duration_s)

    @torch.no_grad()
    def generate_from_text(self, texts: list[str], duration_s: float | None = None,
                           seed: int | None = None) -> list[np.ndarray]:
        """MusicGen prompted with ``texts`` through its own T5 encoder (its own guidance)."""
        duration_s = duration_s or self.config.duration_s
        enc = self.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        with self._seeded(seed):
            audio = self.model.generate(input_ids=enc["input_ids"],
                                        attention_mask=enc["attention_mask"],
                                        **self._generation_kwargs(duration_s))
        return self._waves(audio, duration_s)


__all__ = ["MusicGenDecoder"]
