"""MusicLLM: frozen encoders -> adapters -> an LLM, joined by splice, xattn or prefix.

The public API follows transformers' audio/vision LLMs (Qwen2-Audio, LLaVA):

- ``model.processor`` (a ``MusicProcessor``, no reference to the model) turns conversations and
  media into ``input_ids``, ``attention_mask``, ``labels`` and ``media``;
- ``model(**batch)`` is the training / scoring forward; ``model.generate(**batch)`` returns new
  token ids; ``generate_text`` and ``chat`` wrap both for text in, text out;
- the building blocks are public: ``get_media_features`` (encoder -> layer selection ->
  adapter), ``get_placeholder_mask``, ``prepare_inputs_embeds`` (embeddings with media spliced
  in, plus the per-call state of cross-attention / prefix injectors) and ``injection`` (the
  context manager that scopes that state to one call).

Everything trainable that is not LoRA (adapters, layer weights, gates, prefixes, the rows of
added tokens, the music-output bridge) lives in this module's own submodules;
``mullm.model_io`` saves exactly those. With a ``music_output`` config section the model also
writes music (M2UGen-style): ``model.outputs["music"]`` (``mullm.outputs.bridge``) holds the
output tokens' rows and the output projector, and ``render_music`` turns a reply's output
tokens into clips.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mullm.adapters import build_adapter
from mullm.config import ModelConfig, load_model_config, validate_model_config
from mullm.encoders import LayerSelector, build_encoder
from mullm.errors import ConfigError
from mullm.injection import (
    CrossAttentionInjector,
    MediaState,
    PrefixInjector,
    injection_scope,
    per_sample_media,
    prefix_layers,
    xattn_layers,
)
from mullm.llm import apply_policy, attention_module, decoder_layers, load_llm
from mullm.media import MARKERS, MediaBatch
from mullm.model_io import ModelIOMixin
from mullm.outputs.bridge import MusicOutput
from mullm.outputs.types import GeneratedAudio
from mullm.outputs.vocab import add_output_tokens
from mullm.processor import IGNORE_INDEX, MusicProcessor

InjectionStates = dict[nn.Module, MediaState]


class MusicLLM(ModelIOMixin, nn.Module):
    """A music language model assembled from a ``ModelConfig``.

    Building it never touches the global RNG: its random initialisations (adapters, gates,
    LoRA) draw from a generator seeded with ``config.seed`` and the caller's RNG state is
    restored afterwards.

    Raises:
        ConfigError: settings that cannot work with the loaded LLM (layer counts, LoRA targets,
            an encoder of the wrong modality, prefix injection on fused q/k/v projections).
    """

    def __init__(self, config: ModelConfig, llm: nn.Module | None = None,
                 tokenizer: Any = None, base_fingerprint: str | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._build(config, llm, tokenizer, base_fingerprint)

    def _build(self, config: ModelConfig, llm: nn.Module | None, tokenizer: Any,
               base_fingerprint: str | None) -> None:
        self.config = config
        if llm is None:
            llm, tokenizer, base_fingerprint = load_llm(config.llm)
        self.base_fingerprint = base_fingerprint or ""
        num_layers = len(decoder_layers(llm))
        validate_model_config(config, num_layers)
        llm_cfg = llm.config.get_text_config() if hasattr(llm.config, "get_text_config") \
            else llm.config
        dim = llm_cfg.hidden_size
        self.hidden_size = dim
        old_vocab = llm.get_input_embeddings().weight.shape[0]
        text_rms = llm.get_input_embeddings().weight[:old_vocab].float().pow(2).mean().sqrt()

        self.encoders = nn.ModuleDict()
        self.layer_selectors = nn.ModuleDict()
        self.adapters = nn.ModuleDict()
        self.output_norms = nn.ModuleDict()
        self.injectors = nn.ModuleDict()
        for m, c in config.modalities.items():
            enc = build_encoder(c.encoder)
            enc.requires_grad_(False)
            enc.eval()
            if enc.modality != m and not (m == "video" and enc.modality == "image"):
                raise ConfigError(
                    f"modalities.{m}.encoder.name={c.encoder.name!r} is a {enc.modality} encoder"
                )
            self.encoders[m] = enc
            self.layer_selectors[m] = LayerSelector(c.encoder.layers, c.encoder.layer_reduce,
                                                    enc.num_layers)
            self.adapters[m] = build_adapter(c.adapter, enc.hidden_size, dim, enc.frame_rate)
            if c.adapter.output_norm:
                # A fresh adapter's tokens can be ~10x the norm of text embeddings, which a
                # frozen LLM reads as noise; start them at the text-embedding scale instead.
                norm = nn.LayerNorm(dim)
                with torch.no_grad():
                    norm.weight.fill_(float(text_rms))
                self.output_norms[m] = norm
            else:
                self.output_norms[m] = nn.Identity()
            inj = c.injection
            if inj.kind == "xattn":
                self.injectors[m] = CrossAttentionInjector(
                    xattn_layers(num_layers, inj.every_n_layers), dim, inj.num_heads)
            elif inj.kind == "prefix":
                heads = llm_cfg.num_attention_heads
                kv = getattr(llm_cfg, "num_key_value_heads", None) or heads
                head_dim = getattr(llm_cfg, "head_dim", None) or dim // heads
                self.injectors[m] = PrefixInjector(
                    prefix_layers(num_layers, inj.top_k_layers, inj.layers), inj.prefix_len,
                    dim, heads, kv, head_dim)

        # The processor adds one placeholder token per spliced modality to the tokenizer (a
        # saved model's tokenizer has them already, with the ids it was trained with). Its
        # media specs always come from this config and these encoders, so load-time
        # overrides (a longer max_duration_s, say) reach it.
        processor = MusicProcessor.from_model_config(config, tokenizer,
                                                     encoders=dict(self.encoders))
        self.processor = processor
        self.placeholder_ids = dict(processor.placeholder_ids)
        self.added_token_ids = sorted(i for i in self.placeholder_ids.values() if i >= old_vocab)
        music = config.music_output
        output_ids = add_output_tokens(processor.tokenizer, music.num_tokens) if music else []
        new_rows = sorted(set(self.added_token_ids) | {i for i in output_ids if i >= old_vocab})
        if new_rows:
            llm.resize_token_embeddings(max(len(processor.tokenizer), old_vocab),
                                        mean_resizing=False)
            # Deterministic rows (the mean embedding) so that a rebuilt model matches; the
            # placeholder rows are also saved, for tokens that a later stage may train. The
            # output tokens' trained rows live in outputs["music"] (hooked in, see below).
            with torch.no_grad():
                for emb in {id(e): e for e in (llm.get_input_embeddings(),
                                               llm.get_output_embeddings()) if e is not None
                            }.values():
                    emb.weight[new_rows] = emb.weight[:old_vocab].mean(0)
        self.outputs = nn.ModuleDict()
        if music is not None:
            self.outputs["music"] = MusicOutput(music, output_ids, llm, dim)

        self.llm = apply_policy(llm, config.llm)
        self._hooks = []
        layers = decoder_layers(self.llm)
        for injector in self.injectors.values():
            if isinstance(injector, CrossAttentionInjector):
                self._hooks += injector.attach(layers)
            else:
                self._hooks += injector.attach(layers, attention_module)
        if "music" in self.outputs:
            self._hooks += self.outputs["music"].attach(self.llm)

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer (with the placeholder tokens)."""
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Device of the LLM's input embeddings."""
        return self.llm.get_input_embeddings().weight.device

    @property
    def context_length(self) -> int | None:
        """The LLM's context window in tokens (``max_position_embeddings``), if it has one."""
        cfg = self.llm.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n = getattr(cfg, "max_position_embeddings", None)
        return int(n) if n else None

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group, for stages and per-group learning rates."""
        groups: dict[str, list[nn.Parameter]] = {}
        for m in self.adapters:
            groups[f"adapter.{m}"] = list(self.adapters[m].parameters()) + \
                list(self.layer_selectors[m].parameters()) + \
                list(self.output_norms[m].parameters())
        for m in self.injectors:
            groups[f"injection.{m}"] = list(self.injectors[m].parameters())
        if "music" in self.outputs:
            groups["output_tokens"] = list(self.outputs["music"].tokens.parameters())
            groups["output_projector"] = list(self.outputs["music"].projector.parameters())
        if self.config.llm.policy == "lora":
            groups["lora"] = [p for n, p in self.llm.named_parameters() if "lora_" in n]
        elif self.config.llm.policy == "full":
            groups["llm"] = [p for p in self.llm.parameters() if p.is_floating_point()]
        return groups

    # ------------------------------------------------------------------ building blocks
    def encode_media(self, modality: str, media: MediaBatch
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder (frozen; or the batch's cached features) -> layer selection.

        Returns the adapter's input frames (N, T, D) for the N items of ``media`` and their
        mask (N, T), True on valid frames.
        """
        if media.features is not None:
            hidden = media.features.to(self.device, torch.float32)
            frames = media.frames.to(hidden.device)
            mask = torch.arange(hidden.shape[2], device=hidden.device)[None] < frames[:, None]
        else:
            with torch.no_grad():
                out = self.encoders[modality](media.values.to(self.device),
                                              media.lengths.to(self.device))
            hidden, mask = out.hidden_states.float(), out.mask
        return self.layer_selectors[modality](hidden), mask

    def get_media_features(self, modality: str, media: MediaBatch
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """``encode_media`` -> adapter -> output norm.

        Returns tokens (N, T, d_llm) for the N items of ``media`` and their mask (N, T), True
        on valid tokens (padding tokens are zero).
        """
        feats, mask = self.encode_media(modality, media)
        tokens, token_mask = self.adapters[modality](feats, mask)
        tokens = self.output_norms[modality](tokens) * token_mask[..., None].to(tokens.dtype)
        return tokens, token_mask

    def get_placeholder_mask(self, input_ids: torch.Tensor, modality: str) -> torch.Tensor:
        """(B, S) bool, True where ``input_ids`` hold ``modality``'s placeholder token."""
        if modality not in self.placeholder_ids:
            raise ValueError(f"{modality!r} is not a spliced modality of this model (spliced: "
                             f"{sorted(self.placeholder_ids)})")
        return input_ids == self.placeholder_ids[modality]

    def prepare_inputs_embeds(self, input_ids: torch.Tensor,
                              media: dict[str, MediaBatch] | None = None
                              ) -> tuple[torch.Tensor, InjectionStates]:
        """Embed ``input_ids`` (B, S), splice media tokens over their placeholders (with a
        count check), and compute the media state of xattn / prefix injectors.

        Returns the embeddings (B, S, d_llm) and {injector: MediaState}, to be made active
        with ``injection`` around the LLM call.

        Raises:
            ValueError: placeholders without media, or a count that does not match what the
                adapter produced (inputs not built with ``model.processor``).
        """
        media = media or {}
        input_ids = input_ids.to(self.device)
        embeds = self.llm.get_input_embeddings()(input_ids)
        B = input_ids.shape[0]
        states: InjectionStates = {}
        for m in self.config.modalities:
            batch = media.get(m)
            if self.config.modalities[m].injection.kind != "splice":
                if batch is not None and len(batch):
                    tokens, tmask = self.get_media_features(m, batch)
                    reduce = "mean" if self.config.modalities[m].injection.kind == "prefix" \
                        else "concat"
                    states[self.injectors[m]] = per_sample_media(
                        tokens, tmask, batch.sample_index.to(tokens.device), B, reduce)
                continue
            pos = self.get_placeholder_mask(input_ids, m)
            if batch is None or len(batch) == 0:
                if bool(pos.any()):
                    rows = pos.any(1).nonzero().flatten().tolist()
                    raise ValueError(f"sample(s) {rows}: {MARKERS[m]} placeholders but no "
                                     f"{m} input was given")
                continue
            tokens, tmask = self.get_media_features(m, batch)
            index = batch.sample_index.to(tokens.device)
            per_sample = torch.zeros(B, dtype=torch.long, device=tokens.device)
            per_sample.index_add_(0, index, tmask.sum(1))
            have = pos.sum(1).to(tokens.device)
            if not torch.equal(per_sample, have):
                b = int((per_sample != have).nonzero()[0])
                raise ValueError(
                    f"sample {b}: {int(have[b])} {m} placeholder tokens in the text but its "
                    f"{m} items give {int(per_sample[b])} tokens; build inputs with "
                    f"model.processor")
            order = torch.argsort(index, stable=True)
            valid = tokens[order][tmask[order]]
            embeds = embeds.masked_scatter(pos.unsqueeze(-1), valid.to(embeds.dtype))
        return embeds, states

    @contextlib.contextmanager
    def injection(self, states: InjectionStates) -> Iterator[None]:
        """Make ``states`` (from ``prepare_inputs_embeds``) the injectors' media for the LLM
        calls inside the block, in this thread only; afterwards nothing remains.

        Raises:
            RuntimeError: on leaving the block without error, if an injector with media never
                ran (its hooks did not reach the LLM's layers).
        """
        with injection_scope(states):
            yield
        unused = [type(inj).__name__ for inj, st in states.items() if not st.used]
        if unused:
            raise RuntimeError(f"{unused}: media were given but the injection hooks never "
                               "ran; the LLM's layers were not called through the hooked "
                               "modules")

    # ------------------------------------------------------------------ forward / loss
    def last_hidden_state(self, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor | None = None,
                          media: dict[str, MediaBatch] | None = None) -> torch.Tensor:
        """The LLM's last hidden states (B, S, d), after its final norm, for a processor
        batch with its media spliced or injected: what the output projector reads."""
        input_ids = input_ids.to(self.device)
        attention_mask = None if attention_mask is None else attention_mask.to(self.device)
        embeds, states = self.prepare_inputs_embeds(input_ids, media)
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        with self.injection(states):
            return base.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask,
                                      position_ids=_position_ids(attention_mask),
                                      use_cache=False).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, media: dict[str, MediaBatch] | None = None,
                return_logits: bool = False, music_captions: list[str | None] | None = None
                ) -> dict[str, torch.Tensor]:
        """Training / scoring forward on a processor batch.

        Returns {"logits": (B, S, V)} without labels (or with ``return_logits``), plus
        "loss" with labels; with labels alone {"loss", "num_tokens"}, computing logits only
        where the loss needs them (the shifted labelled positions), which saves the
        vocabulary matmul on every audio and prompt token.

        ``music_captions`` (per sample, a target caption or None; the collator's
        ``music_captions``) adds the music-output projector loss: "loss" becomes
        ``lm_loss + music_output.loss_weight * generation_loss`` and both terms are returned
        too (``mullm.outputs.bridge.MusicOutput.generation_loss``).

        Raises:
            ValueError: a batch without any labelled token (when labels are given); captions
                for a model without music output, or a captioned sample without output tokens.
        """
        if music_captions is not None and any(music_captions) and "music" not in self.outputs:
            raise ValueError("the batch carries music captions but the model has no "
                             "music_output section")
        input_ids = input_ids.to(self.device)
        attention_mask = None if attention_mask is None else attention_mask.to(self.device)
        if labels is None or return_logits:
            embeds, states = self.prepare_inputs_embeds(input_ids, media)
            with self.injection(states):
                out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask,
                               position_ids=_position_ids(attention_mask), use_cache=False)
            result = {"logits": out.logits}
            if labels is not None:
                result["loss"] = causal_loss(out.logits, labels.to(self.device))
                if music_captions is not None and any(music_captions):
                    hidden = self.last_hidden_state(input_ids, attention_mask, media)
                    result = self._with_generation_loss(result, hidden, input_ids,
                                                        music_captions)
            return result
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        hidden = self.last_hidden_state(input_ids, attention_mask, media)
        labels = labels.to(self.device)
        shift_labels = labels[:, 1:]
        sel = shift_labels != IGNORE_INDEX
        n = int(sel.sum())
        if n == 0:
            raise ValueError("the batch has no labelled (assistant) tokens to train on")
        logits = base.get_output_embeddings()(hidden[:, :-1][sel])
        softcap = getattr(base.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss = nn.functional.cross_entropy(logits.float(), shift_labels[sel], reduction="sum") / n
        result = {"loss": loss, "num_tokens": torch.tensor(n, device=loss.device)}
        if music_captions is not None and any(music_captions):
            result = self._with_generation_loss(result, hidden, input_ids, music_captions)
        elif "music" in self.outputs and torch.is_grad_enabled():
            zero = self.outputs["music"].zero_loss()  # every trainable parameter takes part
            result["loss"] = loss if zero is None else loss + zero
        return result

    def _with_generation_loss(self, result: dict[str, torch.Tensor], hidden: torch.Tensor,
                              input_ids: torch.Tensor, captions: list[str | None]
                              ) -> dict[str, torch.Tensor]:
        gen = self.outputs["music"].generation_loss(hidden, input_ids, captions)
        if gen is None:
            return result
        weight = self.config.music_output.loss_weight
        return {**result, "loss": result["loss"] + weight * gen,
                "lm_loss": result["loss"].detach(), "generation_loss": gen.detach()}

    # ------------------------------------------------------------------ generation
    def _generation_config(self, generation_config: Any, kwargs: dict[str, Any]
                           ) -> tuple[Any, dict[str, Any]]:
        """(GenerationConfig, the kwargs it does not hold). Defaults: greedy, 64 new tokens,
        whatever the LLM's own generation defaults say."""
        from transformers import GenerationConfig

        gc = copy.deepcopy(generation_config) if generation_config is not None \
            else GenerationConfig(max_new_tokens=64, do_sample=False, num_beams=1)
        rest = gc.update(**kwargs)
        if gc.pad_token_id is None:
            gc.pad_token_id = self.tokenizer.pad_token_id
        if self.added_token_ids:
            # Placeholders are inputs only; a model must never generate them.
            gc.suppress_tokens = sorted(set(gc.suppress_tokens or []) |
                                        set(self.added_token_ids))
        if not gc.do_sample:
            gc.temperature, gc.top_p, gc.top_k = None, None, None
        return gc, rest

    def _check_context(self, prompt_len: int, gc: Any) -> None:
        limit = self.context_length
        if limit is None:
            return
        if prompt_len >= limit:
            raise ValueError(
                f"the prompt is {prompt_len} tokens but {self.config.llm.name_or_path!r} has a "
                f"context of {limit} tokens, so nothing can be generated; shorten the "
                "conversation or the audio (fewer or pooled audio tokens)")
        room = limit - prompt_len
        if gc.max_new_tokens is not None and gc.max_new_tokens > room:
            warnings.warn(f"max_new_tokens={gc.max_new_tokens} would run past the context of "
                          f"{limit} tokens (prompt: {prompt_len}); generating at most {room}",
                          stacklevel=3)
            gc.max_new_tokens = room

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 media: dict[str, MediaBatch] | None = None, generation_config: Any = None,
                 **kwargs: Any) -> torch.Tensor:
        """Generate from a processor batch built with ``add_generation_prompt=True`` and left
        padding: ``model.generate(**processor(convs, media, add_generation_prompt=True,
        padding_side="left"))``. The LLM's own ``generate`` runs with its KV cache; media are
        encoded once, at prefill.

        Args:
            generation_config: a ``transformers.GenerationConfig``; keyword arguments override
                its fields (``max_new_tokens``, ``do_sample``, ...); others (``streamer``,
                ``stopping_criteria``) go to ``generate``.

        Returns:
            New token ids (B, new), without the prompt.

        Raises:
            TypeError: conversations passed instead of token ids (use ``generate_text``).
            ValueError: a prompt that does not fit the LLM's context.
        """
        if not torch.is_tensor(input_ids):
            raise TypeError("generate takes token ids from model.processor(...); for "
                            "conversations use model.generate_text(conversations, media)")
        gc, rest = self._generation_config(generation_config, kwargs)
        self._check_context(int(input_ids.shape[1]), gc)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds, states = self.prepare_inputs_embeds(input_ids, media)
        with self.injection(states):
            return self.llm.generate(inputs_embeds=embeds,
                                     attention_mask=attention_mask.to(self.device),
                                     generation_config=gc, **rest)

    def generate_text(self, conversations: list[list[dict]], media: list[dict] | None = None,
                      generation_config: Any = None, seed: int | None = None,
                      **kwargs: Any) -> list[str]:
        """Batched generation for conversations (left padding, KV cache) -> reply texts.

        ``seed`` makes sampling reproducible without changing the caller's RNG state.
        Keyword arguments are as for ``generate``.
        """
        batch = self.processor(conversations, media, add_generation_prompt=True,
                               padding_side="left")
        was_training = self.training
        self.eval()
        try:
            rng = torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda"
                                        else [])
            with rng if seed is not None else contextlib.nullcontext():
                if seed is not None:
                    torch.manual_seed(seed)
                ids = self.generate(**batch, generation_config=generation_config, **kwargs)
        finally:
            self.train(was_training)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def chat(self, prompt: str, audio: Any = None, image: Any = None,
             history: list[dict] | None = None, **kwargs: Any) -> str:
        """One reply to ``prompt`` about ``audio`` / ``image`` (a path, an array, or a list of
        them), after ``history`` (earlier messages); keyword arguments as for
        ``generate_text``."""
        messages = list(history or []) + [{"role": "user", "content": prompt}]
        media: dict[str, list] = {}
        for name, value in (("audio", audio), ("image", image)):
            if value is not None:
                media[name] = list(value) if isinstance(value, (list, tuple)) else [value]
        return self.generate_text([messages], [media], **kwargs)[0]

    def render_music(self, messages: list[dict], media: dict[str, list] | None = None,
                     mode: str | None = None, duration_s: float | None = None,
                     seed: int | None = None) -> list[GeneratedAudio]:
        """The clips asked for by the output tokens in the last (assistant) message of
        ``messages``, with ``media`` the conversation's items ({"audio": [...]}, in marker
        order; an earlier ``GeneratedAudio`` may be one, for editing). ``mode`` is
        "projector" or "text" (default ``music_output.mode``). Returns one clip per complete
        run of output tokens, [] when the model has no music output or the reply none
        (``mullm.outputs.render.render_music``)."""
        from mullm.outputs.render import render_music

        return render_music(self, messages, media, mode=mode, duration_s=duration_s,
                            seed=seed)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | Path | ModelConfig, overrides: list[str] | None = None,
             **kwargs: Any) -> MusicLLM:
        """A model directory (trained), or a config (untrained adapters): a ``ModelConfig``,
        a YAML path, or the name of a shipped config (``"offline-default"``).

        Raises:
            ModelLoadError: neither a model directory nor a config (the known names listed).
        """
        from mullm.config import resolve_model_source

        if isinstance(source, ModelConfig):
            return cls(source)
        resolved = resolve_model_source(source)
        if Path(resolved).is_dir():
            return cls.from_pretrained(resolved, overrides, **kwargs)
        return cls(load_model_config(resolved, overrides))


def _position_ids(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Positions counted over real tokens: left-padded rows (batched generation) start at 0."""
    if attention_mask is None:
        return None
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions: logits (B, S, V), labels (B, S)
    with ``IGNORE_INDEX`` where nothing is learned."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                       shift_labels.reshape(-1), ignore_index=IGNORE_INDEX)


__all__ = ["MediaState", "MusicLLM", "causal_loss"]
