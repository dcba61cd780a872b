"""MusicLLM: frozen encoders -> adapters -> an LLM, joined by splice, xattn or prefix.

Everything trainable that is not LoRA (adapters, layer weights, gates, prefixes, the rows of
added tokens) lives in this module's own submodules, so ``save_pretrained`` writes exactly
those tensors to ``trainable.safetensors``, LoRA to ``lora/`` in peft's own layout, and never
the base LLM (INTERFACES.md, model directory).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from mullm import __version__
from mullm.adapters import build_adapter
from mullm.config import ModelConfig, load_model_config, to_dict, validate_model_config
from mullm.encoders import LayerSelector, build_encoder
from mullm.errors import ConfigError, ModelLoadError
from mullm.injection import (
    CrossAttentionInjector,
    MediaState,
    PrefixInjector,
    per_sample_media,
    prefix_layers,
    xattn_layers,
)
from mullm.llm import apply_policy, attention_module, decoder_layers, load_llm
from mullm.processor import IGNORE_INDEX, MARKERS, MediaBatch, MusicProcessor

TRAINABLE_FILE = "trainable.safetensors"


def _config_hash(cfg: ModelConfig) -> str:
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class MusicLLM(nn.Module):
    """A music language model assembled from a ``ModelConfig``."""

    def __init__(self, config: ModelConfig, llm: nn.Module | None = None,
                 tokenizer: Any = None, base_fingerprint: str | None = None) -> None:
        super().__init__()
        torch.manual_seed(config.seed)
        self.config = config
        if llm is None:
            llm, tokenizer, base_fingerprint = load_llm(config.llm)
        self.base_fingerprint = base_fingerprint or ""
        self.tokenizer = tokenizer
        num_layers = len(decoder_layers(llm))
        validate_model_config(config, num_layers)
        llm_cfg = llm.config.get_text_config() if hasattr(llm.config, "get_text_config") \
            else llm.config
        dim = llm_cfg.hidden_size
        self.hidden_size = dim

        # One placeholder token per spliced modality, added to the vocabulary.
        self.placeholder_ids: dict[str, int] = {}
        old_vocab = llm.get_input_embeddings().weight.shape[0]
        new_tokens = [MARKERS[m] for m, c in config.modalities.items()
                      if c.injection.kind == "splice"]
        if new_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": new_tokens},
                                         replace_extra_special_tokens=False)
            for m, c in config.modalities.items():
                if c.injection.kind == "splice":
                    self.placeholder_ids[m] = tokenizer.convert_tokens_to_ids(MARKERS[m])
        self.added_token_ids = sorted(i for i in self.placeholder_ids.values() if i >= old_vocab)
        if self.added_token_ids:
            llm.resize_token_embeddings(max(len(tokenizer), old_vocab), mean_resizing=False)
            # Deterministic rows (the mean embedding) so that a rebuilt model matches; the
            # rows are also saved, for tokens that a later stage may train.
            with torch.no_grad():
                for emb in {id(e): e for e in (llm.get_input_embeddings(),
                                               llm.get_output_embeddings()) if e is not None
                            }.values():
                    emb.weight[self.added_token_ids] = emb.weight[:old_vocab].mean(0)

        self.encoders = nn.ModuleDict()
        self.layer_selectors = nn.ModuleDict()
        self.adapters = nn.ModuleDict()
        self.output_norms = nn.ModuleDict()
        text_rms = llm.get_input_embeddings().weight[:old_vocab].float().pow(2).mean().sqrt()
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

        self.llm = apply_policy(llm, config.llm)
        self._hooks = []
        layers = decoder_layers(self.llm)
        for injector in self.injectors.values():
            if isinstance(injector, CrossAttentionInjector):
                self._hooks += injector.attach(layers)
            else:
                self._hooks += injector.attach(layers, attention_module)
        self.processor = MusicProcessor(self)

    # ------------------------------------------------------------------ building blocks
    @property
    def device(self) -> torch.device:
        """Device of the LLM's input embeddings."""
        return self.llm.get_input_embeddings().weight.device

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group, for stages and per-group learning rates."""
        groups: dict[str, list[nn.Parameter]] = {}
        for m in self.adapters:
            groups[f"adapter.{m}"] = list(self.adapters[m].parameters()) + \
                list(self.layer_selectors[m].parameters()) + \
                list(self.output_norms[m].parameters())
        for m in self.injectors:
            groups[f"injection.{m}"] = list(self.injectors[m].parameters())
        if self.config.llm.policy == "lora":
            groups["lora"] = [p for n, p in self.llm.named_parameters() if "lora_" in n]
        elif self.config.llm.policy == "full":
            groups["llm"] = [p for p in self.llm.parameters() if p.is_floating_point()]
        return groups

    def encode_media(self, modality: str, media: MediaBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder (frozen, or cached features) -> layer selection -> adapter tokens."""
        enc = self.encoders[modality]
        if media.features is not None:
            hidden = media.features.to(self.device, torch.float32)
            T = hidden.shape[2]
            frames = media.frames.to(hidden.device)
            mask = torch.arange(T, device=hidden.device)[None] < frames[:, None]
        else:
            with torch.no_grad():
                out = enc(media.values.to(self.device), media.lengths.to(self.device))
            hidden, mask = out.hidden_states.float(), out.mask
        feats = self.layer_selectors[modality](hidden)
        tokens, token_mask = self.adapters[modality](feats, mask)
        tokens = self.output_norms[modality](tokens) * token_mask[..., None].to(tokens.dtype)
        return tokens, token_mask

    def _embed(self, input_ids: torch.Tensor, media: dict[str, MediaBatch] | None
               ) -> torch.Tensor:
        """Embed tokens, splice media tokens over placeholders, and set xattn/prefix state."""
        media = media or {}
        emb_layer = self.llm.get_input_embeddings()
        embeds = emb_layer(input_ids)
        B = input_ids.shape[0]
        for m in self.config.modalities:
            batch = media.get(m)
            kind = self.config.modalities[m].injection.kind
            if kind == "splice":
                pid = self.placeholder_ids[m]
                pos = input_ids == pid
                if batch is None or len(batch) == 0:
                    if bool(pos.any()):
                        rows = pos.any(1).nonzero().flatten().tolist()
                        raise ValueError(f"sample(s) {rows}: {MARKERS[m]} placeholders but no "
                                         f"{m} input was given")
                    continue
                tokens, tmask = self.encode_media(m, batch)
                per_sample = torch.zeros(B, dtype=torch.long)
                per_sample.index_add_(0, batch.sample_index.cpu(), tmask.sum(1).cpu())
                have = pos.sum(1).cpu()
                if not torch.equal(per_sample, have):
                    bad = (per_sample != have).nonzero().flatten().tolist()
                    b = bad[0]
                    raise ValueError(
                        f"sample {b}: {int(have[b])} {m} placeholder tokens in the text but "
                        f"its {m} items give {int(per_sample[b])} tokens; build inputs with "
                        f"model.processor"
                    )
                order = torch.argsort(batch.sample_index.cpu(), stable=True).to(tokens.device)
                valid = tokens[order][tmask[order]]
                embeds = embeds.masked_scatter(pos.unsqueeze(-1).to(embeds.device),
                                               valid.to(embeds.dtype))
            else:
                injector = self.injectors[m]
                if batch is None or len(batch) == 0:
                    injector.state = None
                    continue
                tokens, tmask = self.encode_media(m, batch)
                reduce = "mean" if kind == "prefix" else "concat"
                injector.state = per_sample_media(tokens, tmask, batch.sample_index.to(
                    tokens.device), B, reduce)
        return embeds

    def _clear_state(self) -> None:
        for inj in self.injectors.values():
            inj.state = None

    # ------------------------------------------------------------------ forward / loss
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, media: dict[str, MediaBatch] | None = None,
                return_logits: bool = False) -> dict[str, torch.Tensor]:
        """Training/scoring forward. With labels, logits are computed only where the loss
        needs them (the shifted labelled positions), which saves the vocabulary matmul on
        every audio and prompt token."""
        input_ids = input_ids.to(self.device)
        attention_mask = None if attention_mask is None else attention_mask.to(self.device)
        position_ids = None
        if attention_mask is not None:
            # Left-padded rows (as in batched generation) keep positions that start at 0.
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        try:
            embeds = self._embed(input_ids, media)
            base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
            if labels is None or return_logits:
                out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=False)
                result = {"logits": out.logits}
                if labels is not None:
                    result["loss"] = causal_loss(out.logits, labels.to(self.device))
                return result
            hidden = base.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask,
                                        position_ids=position_ids,
                                        use_cache=False).last_hidden_state
        finally:
            self._clear_state()
        labels = labels.to(self.device)
        shift_labels = labels[:, 1:]
        sel = shift_labels != IGNORE_INDEX
        h = hidden[:, :-1][sel]
        logits = base.get_output_embeddings()(h)
        softcap = getattr(base.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        n = int(sel.sum())
        if n == 0:
            raise ValueError("the batch has no labelled (assistant) tokens to train on")
        loss = nn.functional.cross_entropy(logits.float(), shift_labels[sel], reduction="sum") / n
        return {"loss": loss, "num_tokens": torch.tensor(n)}

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     media: dict[str, MediaBatch] | None = None, **gen_kwargs: Any
                     ) -> torch.Tensor:
        """Generate with the LLM's own ``generate`` and KV cache; media are encoded once at
        prefill. Returns only the new token ids (B, new)."""
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        embeds = self._embed(input_ids, media)
        gen_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if self.added_token_ids:
            gen_kwargs.setdefault("suppress_tokens", list(self.added_token_ids))
        try:
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                    **gen_kwargs)
        finally:
            self._clear_state()
        return out

    def generate(self, conversations: list[list[dict]], media: list[dict] | None = None,
                 max_new_tokens: int = 64, do_sample: bool = False, num_beams: int = 1,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 **gen_kwargs: Any) -> list[str]:
        """Batched generation for conversations (left padding, KV cache) -> reply texts."""
        if seed is not None:
            torch.manual_seed(seed)
        batch = self.processor(conversations, media, add_generation_prompt=True,
                               padding_side="left")
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams)
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        kwargs.update(gen_kwargs)
        was_training = self.training
        self.eval()
        try:
            ids = self.generate_ids(batch["input_ids"], batch["attention_mask"],
                                    batch["media"], **kwargs)
        finally:
            self.train(was_training)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def chat(self, prompt: str, audio: Any = None, image: Any = None,
             history: list[dict] | None = None, **gen_kwargs: Any) -> str:
        """One reply to ``prompt`` about ``audio`` (a path, a waveform, or a list of them)."""
        messages = list(history or []) + [{"role": "user", "content": prompt}]
        media: dict[str, list] = {}
        for name, value in (("audio", audio), ("image", image)):
            if value is not None:
                media[name] = list(value) if isinstance(value, (list, tuple)) else [value]
        return self.generate([messages], [media], **gen_kwargs)[0]

    def caption(self, paths: Any, **kwargs: Any) -> list[dict]:
        """Caption files, folders, globs or manifests -> caption records (whole tracks,
        batched); see ``mullm.caption.caption_files``."""
        from mullm.caption import caption_files

        return caption_files(self, paths, **kwargs)

    # ------------------------------------------------------------------ save / load
    _OWN_PREFIXES = ("layer_selectors", "adapters", "output_norms", "injectors")

    def _embedding_keys(self) -> tuple[str, str | None]:
        """State-dict keys of the input and (when untied) output embedding weights."""
        names = {id(m): n for n, m in self.named_modules()}
        inp = names[id(self.llm.get_input_embeddings())] + ".weight"
        out_emb = self.llm.get_output_embeddings()
        if out_emb is None or out_emb.weight is self.llm.get_input_embeddings().weight:
            return inp, None
        return inp, names[id(out_emb)] + ".weight"

    def saved_state_filter(self) -> Callable[[str], bool]:
        """A test for the entries of ``state_dict()`` that ``save_pretrained`` writes."""
        policy = self.config.llm.policy
        embeddings = set(self._embedding_keys()) if self.added_token_ids else set()

        def keep(key: str) -> bool:
            if key.split(".", 1)[0] in self._OWN_PREFIXES:
                return True
            if policy == "full":
                return key.startswith("llm.")
            return (policy == "lora" and "lora_" in key) or key in embeddings

        return keep

    def trainable_state_dict(self, full: dict[str, torch.Tensor] | None = None
                             ) -> dict[str, torch.Tensor]:
        """Every tensor this model owns besides the base LLM, the frozen encoders and LoRA.

        ``full`` is this model's state dict with whole tensors (at least the entries
        ``saved_state_filter`` selects), e.g. gathered from FSDP shards; default: our own.
        """
        if full is None:
            full = self.state_dict()
        state = {k: v for k, v in full.items() if k.split(".", 1)[0] in self._OWN_PREFIXES}
        if self.added_token_ids:
            ids = self.added_token_ids
            inp, out = self._embedding_keys()
            state["new_token_rows.input"] = full[inp][ids]
            if out is not None:
                state["new_token_rows.output"] = full[out][ids]
        if self.config.llm.policy == "full":
            state.update({k: v for k, v in full.items() if k.startswith("llm.")})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save_pretrained(self, out_dir: str | Path,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write a model directory: config.yaml, trainable.safetensors, lora/, tokenizer/,
        mullm.json. ``state_dict`` supplies whole tensors when the model itself holds shards
        (FSDP); it needs the entries ``saved_state_filter`` selects."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        state = self.trainable_state_dict(state_dict)
        # Tied tensors (e.g. a full fine-tune with tied embeddings) share storage.
        seen: dict[int, str] = {}
        unique = {}
        for k, v in state.items():
            ptr = v.data_ptr()
            if ptr in seen and v.numel():
                continue
            seen[ptr] = k
            unique[k] = v.clone() if v.numel() else v
        save_file(unique, str(out / TRAINABLE_FILE), metadata={"mullm": __version__})
        if self.config.llm.policy == "lora":
            lora = None if state_dict is None else {
                k[len("llm."):]: v for k, v in state_dict.items()
                if k.startswith("llm.") and "lora_" in k}
            self.llm.save_pretrained(out / "lora", state_dict=lora, save_embedding_layers=False)
        if self.added_token_ids:
            self.tokenizer.save_pretrained(out / "tokenizer")
        meta = {"mullm_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config_fingerprint": _config_hash(self.config),
                "base_weights_fingerprint": self.base_fingerprint,
                "trainable_parameters": int(sum(v.numel() for v in unique.values()))}
        (out / "mullm.json").write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, overrides: list[str] | None = None,
                        **kwargs: Any) -> MusicLLM:
        """Rebuild from a model directory and load its weights with strict key checks."""
        d = Path(model_dir)
        for needed in ("config.yaml", TRAINABLE_FILE, "mullm.json"):
            if not (d / needed).is_file():
                raise ModelLoadError(f"{d}: not a mullm model directory ({needed} is missing)")
        cfg = load_model_config(d / "config.yaml", overrides)
        meta = json.loads((d / "mullm.json").read_text())
        llm = tokenizer = fp = None
        if (d / "tokenizer").is_dir():
            from mullm.llm import load_base_llm, load_tokenizer, weights_fingerprint

            tokenizer = load_tokenizer(cfg.llm, str(d / "tokenizer"), None)
            llm = load_base_llm(cfg.llm)
            fp = weights_fingerprint(llm)
        model = cls(cfg, llm=llm, tokenizer=tokenizer, base_fingerprint=fp)
        want = meta.get("base_weights_fingerprint")
        if want and want != model.base_fingerprint:
            raise ModelLoadError(
                f"{d}: was trained on base LLM weights with fingerprint {want}, but "
                f"{cfg.llm.name_or_path!r} now has fingerprint {model.base_fingerprint}; "
                "load it onto the same base LLM it was trained on"
            )
        model.load_trainable(d)
        return model

    def load_trainable(self, model_dir: str | Path) -> None:
        """Load trainable.safetensors (strict) and lora/ (strict) from a model directory."""
        d = Path(model_dir)
        state = load_file(str(d / TRAINABLE_FILE))
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        # Tied tensors are stored once; fill their twins from the stored copy.
        if self.config.llm.policy == "full" and missing:
            llm_state = self.llm.state_dict()
            stored = {llm_state[k[4:]].data_ptr() for k in state
                      if k.startswith("llm.") and k[4:] in llm_state}
            missing = [k for k in missing
                       if not (k.startswith("llm.") and llm_state[k[4:]].data_ptr() in stored)]
        if missing or unexpected:
            raise ModelLoadError(
                f"{d / TRAINABLE_FILE}: keys do not match this config; missing: {missing[:20]}"
                f"{' ...' if len(missing) > 20 else ''}; unexpected: {unexpected[:20]}"
                f"{' ...' if len(unexpected) > 20 else ''}"
            )
        for k, v in state.items():
            if expected[k].shape != v.shape:
                raise ModelLoadError(
                    f"{d / TRAINABLE_FILE}: {k} has shape {tuple(v.shape)}, the model expects "
                    f"{tuple(expected[k].shape)}"
                )
        with torch.no_grad():
            for prefix in ("layer_selectors", "adapters", "output_norms", "injectors"):
                sub = {k[len(prefix) + 1:]: v for k, v in state.items()
                       if k.startswith(prefix + ".")}
                getattr(self, prefix).load_state_dict(sub, strict=True)
            if self.added_token_ids:
                ids = self.added_token_ids
                self.llm.get_input_embeddings().weight[ids] = state["new_token_rows.input"]
                if "new_token_rows.output" in state:
                    self.llm.get_output_embeddings().weight[ids] = state["new_token_rows.output"]
            if self.config.llm.policy == "full":
                sub = {k[4:]: v for k, v in state.items() if k.startswith("llm.")}
                # Tied weights (lm_head = embeddings) are stored once; loading the stored
                # twin fills the other, so only those may be absent.
                res = self.llm.load_state_dict(sub, strict=False)
                current = self.llm.state_dict()
                stored = {current[k].data_ptr() for k in sub if k in current}
                untied = [k for k in res.missing_keys if current[k].data_ptr() not in stored]
                if res.unexpected_keys or untied:
                    raise ModelLoadError(f"{d}: LLM keys do not match; missing: {untied[:10]}, "
                                         f"unexpected: {res.unexpected_keys[:10]}")
        if self.config.llm.policy == "lora":
            self._load_lora(d / "lora")

    def _load_lora(self, lora_dir: Path) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        if not lora_dir.is_dir():
            raise ModelLoadError(f"{lora_dir}: missing; the config uses llm.policy=lora")
        weights = load_peft_weights(str(lora_dir), device="cpu")
        res = set_peft_model_state_dict(self.llm, weights)
        unexpected = list(getattr(res, "unexpected_keys", []) or [])
        lora_keys = [k for k in self.llm.state_dict() if "lora_" in k]
        if unexpected or len(weights) != len(lora_keys):
            raise ModelLoadError(
                f"{lora_dir}: LoRA weights do not match llm.lora in config.yaml "
                f"({len(weights)} tensors saved, {len(lora_keys)} expected; unexpected: "
                f"{unexpected[:10]})"
            )

    @classmethod
    def load(cls, source: str | Path | ModelConfig, overrides: list[str] | None = None,
             **kwargs: Any) -> MusicLLM:
        """A model directory (trained) or a config YAML / ModelConfig (untrained adapters)."""
        if isinstance(source, ModelConfig):
            return cls(source)
        p = Path(source)
        if p.is_dir():
            return cls.from_pretrained(p, overrides, **kwargs)
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            return cls(load_model_config(p, overrides))
        raise ModelLoadError(
            f"--model {source}: expected a model directory (with config.yaml and "
            f"trainable.safetensors) or a config .yaml file"
        )


def causal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                       shift_labels.reshape(-1), ignore_index=IGNORE_INDEX)


__all__ = ["MediaState", "MusicLLM", "causal_loss"]
