"""The model directory: what ``MusicLLM`` saves and how it loads it back, strictly.

A model directory (INTERFACES.md) holds ``config.yaml``, ``trainable.safetensors`` (every
trained tensor that is not LoRA: adapters, gates, prefixes, new token rows, the music-output
bridge's output-token rows and projector (``outputs.music.*``); the whole LLM under ``policy:
full``), ``lora/`` in peft's own layout, ``processor/`` (tokenizer and media specs, loadable
alone with ``MusicProcessor.from_pretrained``) and ``mullm.json`` (version, time,
fingerprints). A music decoder is referenced by the config, never saved. Loading checks
every key and shape and the base weights' fingerprint: nothing is dropped silently.
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

from mullm._version import __version__
from mullm.config import ModelConfig, load_model_config, to_dict
from mullm.errors import ModelLoadError

TRAINABLE_FILE = "trainable.safetensors"
PROCESSOR_DIR = "processor"
# Submodules of MusicLLM whose every tensor is saved.
OWN_PREFIXES = ("layer_selectors", "adapters", "output_norms", "injectors", "outputs")


def config_hash(cfg: ModelConfig) -> str:
    """A short sha256 of a resolved model config."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_model_dir(model_dir: str | Path) -> Path:
    """The folder, if it is a mullm model directory; else ModelLoadError naming what lacks."""
    d = Path(model_dir)
    for needed in ("config.yaml", TRAINABLE_FILE, "mullm.json"):
        if not (d / needed).is_file():
            raise ModelLoadError(f"{d}: not a mullm model directory ({needed} is missing)")
    return d


def model_fingerprint(model: Any) -> str:
    """Hash of what decides a model's outputs: the config, the base weights' fingerprint and
    every trained tensor (adapters, gates, LoRA). 16 hex characters; batch jobs record it and
    refuse to resume with another model."""
    h = hashlib.sha256()
    h.update(yaml.safe_dump(to_dict(model.config), sort_keys=True).encode())
    h.update(str(model.base_fingerprint).encode())
    state = model.trainable_state_dict()
    for name, p in model.llm.named_parameters():
        if "lora_" in name:
            state[f"lora.{name}"] = p.detach().cpu()
    for k in sorted(state):
        t = state[k].contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        # Hash raw bytes (bf16 has no numpy dtype: view it as int16).
        arr = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


class ModelIOMixin:
    """Saving and loading for ``MusicLLM`` (mixed into it; see the module docstring)."""

    config: ModelConfig
    llm: nn.Module
    processor: Any
    added_token_ids: list[int]
    base_fingerprint: str

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
            if key.split(".", 1)[0] in OWN_PREFIXES:
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
        state = {k: v for k, v in full.items() if k.split(".", 1)[0] in OWN_PREFIXES}
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
        """Write a model directory (module docstring). ``state_dict`` supplies whole tensors
        when the model itself holds shards (FSDP); it needs the entries
        ``saved_state_filter`` selects. Returns the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        state = self.trainable_state_dict(state_dict)
        # Tied tensors (e.g. a full fine-tune with tied embeddings) share storage.
        seen: set[int] = set()
        unique = {}
        for k, v in state.items():
            ptr = v.data_ptr()
            if ptr in seen and v.numel():
                continue
            seen.add(ptr)
            unique[k] = v.clone() if v.numel() else v
        save_file(unique, str(out / TRAINABLE_FILE), metadata={"mullm": __version__})
        if self.config.llm.policy == "lora":
            lora = None if state_dict is None else {
                k[len("llm."):]: v for k, v in state_dict.items()
                if k.startswith("llm.") and "lora_" in k}
            self.llm.save_pretrained(out / "lora", state_dict=lora, save_embedding_layers=False)
        self.processor.save_pretrained(str(out / PROCESSOR_DIR))
        meta = {"mullm_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config_fingerprint": config_hash(self.config),
                "base_weights_fingerprint": self.base_fingerprint,
                "trainable_parameters": int(sum(v.numel() for v in unique.values()))}
        (out / "mullm.json").write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, overrides: list[str] | None = None,
                        **kwargs: Any) -> Any:
        """Rebuild from a model directory and load its weights with strict key checks.

        Raises:
            ModelLoadError: not a model directory, other base weights, or keys / shapes that
                do not match the config.
        """
        from mullm.llm import load_base_llm, load_tokenizer, weights_fingerprint
        from mullm.processor import MusicProcessor

        d = check_model_dir(model_dir)
        cfg = load_model_config(d / "config.yaml", overrides)
        meta = json.loads((d / "mullm.json").read_text())
        llm = tokenizer = fp = None
        if (d / PROCESSOR_DIR).is_dir():
            # The saved tokenizer holds the placeholder tokens with their trained ids.
            tokenizer = MusicProcessor.from_pretrained(str(d / PROCESSOR_DIR)).tokenizer
        elif (d / "tokenizer").is_dir():  # model directories from before processor/
            tokenizer = load_tokenizer(cfg.llm, str(d / "tokenizer"), None)
        if tokenizer is not None:
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
            for prefix in OWN_PREFIXES:
                sub = {k[len(prefix) + 1:]: v for k, v in state.items()
                       if k.startswith(prefix + ".")}
                getattr(self, prefix).load_state_dict(sub, strict=True)
            if self.added_token_ids:
                ids = self.added_token_ids
                self.llm.get_input_embeddings().weight[ids] = state["new_token_rows.input"]
                if "new_token_rows.output" in state:
                    self.llm.get_output_embeddings().weight[ids] = state["new_token_rows.output"]
            if self.config.llm.policy == "full":
                self._load_full_llm(d, state)
        if self.config.llm.policy == "lora":
            self._load_lora(d / "lora")

    def _load_full_llm(self, d: Path, state: dict[str, torch.Tensor]) -> None:
        sub = {k[4:]: v for k, v in state.items() if k.startswith("llm.")}
        # Tied weights (lm_head = embeddings) are stored once; loading the stored twin fills
        # the other, so only those may be absent.
        res = self.llm.load_state_dict(sub, strict=False)
        current = self.llm.state_dict()
        stored = {current[k].data_ptr() for k in sub if k in current}
        untied = [k for k in res.missing_keys if current[k].data_ptr() not in stored]
        if res.unexpected_keys or untied:
            raise ModelLoadError(f"{d}: LLM keys do not match; missing: {untied[:10]}, "
                                 f"unexpected: {res.unexpected_keys[:10]}")

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


__all__ = ["OWN_PREFIXES", "PROCESSOR_DIR", "TRAINABLE_FILE", "ModelIOMixin",
           "check_model_dir", "config_hash", "model_fingerprint"]
