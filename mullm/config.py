"""Typed configs: dataclasses loaded from YAML with strict checks and dotted CLI overrides.

A config file is data. Loading it finds the file (a path, or a shipped config's name:
``mullm.config_files``), applies dotted overrides, expands the presets it names, turns every
mapping into the dataclass its field names, checks every value's type, and refuses unknown
keys with the closest known key as a hint. ``validate_model_config`` then checks the
combinations that cannot work (a Q-Former with no queries, a prefix on more layers than the
LLM has, ...). Checks that need the built LLM (layer count, LoRA targets) run again in
``mullm.model`` once the LLM is loaded.

Numbers are read as people write them: a float field takes ``1e-4`` and ``3E-5`` (which YAML
1.1 leaves as strings without a dot), an integer field takes ``1_000`` and a whole ``1e4``.
A string field given on the command line keeps its text (``llm.revision=1.10`` stays
"1.10").
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mullm.config_files import compose, read_config, read_yaml, resolve_config_path
from mullm.errors import ConfigError
from mullm.outputs.config import (
    MusicDecoderConfig,
    MusicOutputConfig,
    ProjectorConfig,
    validate_music_output,
)

# ----------------------------------------------------------------------------- dataclasses


@dataclass
class EncoderConfig:
    """A frozen encoder: which one, where its weights are, and how its output is read."""

    name: str = "spectral"
    checkpoint: str | None = None
    # Layer selection: an index, a list of indices, or "all"; several layers are reduced
    # by ``layer_reduce`` ("mean", or "weighted" = learned softmax weights as in MU-LLaMA).
    layers: int | list[int] | str = -1
    layer_reduce: Literal["mean", "weighted"] = "mean"
    sample_rate: int | None = None
    frame_rate: float | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    # Audio limits and windowing for long inputs (seconds).
    max_duration_s: float = 30.0
    min_duration_s: float = 0.1
    window_s: float | None = None
    hop_s: float | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cache_dir: str | None = None
    # Encoder-family settings that only one family reads (n_mels, image_size, ...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterConfig:
    """Maps encoder frames (B, T, D) to LLM tokens (B, N, d_llm)."""

    name: Literal["linear", "mlp", "qformer", "window_qformer", "perceiver"] = "mlp"
    hidden_size: int = 512
    num_layers: int = 2
    mlp_style: Literal["gelu", "swiglu"] = "gelu"
    num_queries: int = 32
    num_heads: int = 8
    cross_attention_every: int = 1
    window_frames: int = 17
    window_stride: int | None = None
    queries_per_window: int = 1
    # Temporal pooling before the adapter: frames per token, or a target token rate in Hz;
    # "global" pools the whole clip into one token (MU-LLaMA).
    pool: Literal["none", "mean", "max", "global"] = "none"
    pool_frames: int | None = None
    pool_rate_hz: float | None = None
    dropout: float = 0.0
    # Summary tokens put before the others: an MLP maps the clip's mean and standard
    # deviation over all valid frames to this many tokens. Clip-level statistics (key
    # profile, tempo periodicity, timbre) are what a linear probe reads best; local tokens
    # alone leave the LLM to average them itself. 0 turns it off.
    global_tokens: int = 0
    # LayerNorm on the adapter's output, its gain initialised to the RMS of the LLM's text
    # embeddings, so media tokens start at the scale the LLM expects.
    output_norm: bool = True
    # "standardize": each input dimension to zero mean and unit variance over the training
    # frames (statistics fitted before the first training step and saved with the adapter;
    # mullm.adapters.input_norm), so small-scale feature dimensions are learned as fast as
    # large ones. "none": frames as the encoder gives them.
    input_norm: Literal["none", "standardize"] = "none"


@dataclass
class InjectionConfig:
    """How a modality's tokens reach the LLM."""

    kind: Literal["splice", "xattn", "prefix"] = "splice"
    every_n_layers: int = 4
    # prefix: learned prefix length per layer, and either the top K layers or an explicit
    # list of layers (a band such as M2UGen's audio 14-19).
    prefix_len: int = 10
    top_k_layers: int | None = None
    layers: list[int] | None = None
    num_heads: int = 8


@dataclass
class ModalityConfig:
    """One input modality: its encoder, adapter and injection."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    placeholder: str | None = None
    max_items: int = 8


@dataclass
class LoRAConfig:
    """LoRA hyper-parameters passed to peft."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class LLMConfig:
    """The decoder LLM: where it comes from and how it is trained."""

    name_or_path: str = "offline:smollm2-135m-instruct"
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    policy: Literal["frozen", "lora", "full"] = "frozen"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    quantization: Literal["none", "4bit", "8bit"] = "none"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    chat_template: str | None = None
    attn_implementation: str | None = None


@dataclass
class ModelConfig:
    """A whole music LLM: an LLM plus any number of modalities (audio, image, video)."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    modalities: dict[str, ModalityConfig] = field(
        default_factory=lambda: {"audio": ModalityConfig()}
    )
    system_prompt: str | None = None
    seed: int = 0
    # Music output (M2UGen's [AUD] tokens -> output projector -> MusicGen / AudioLDM2); None
    # for a model that only reads music. Its dataclasses: mullm/outputs/config.py.
    music_output: MusicOutputConfig | None = None


KNOWN_MODALITIES = ("audio", "image", "video")

# Keys that configs no longer have: (the value old files wrote, why it went). Model
# directories saved before the removal hold the old value; it is dropped silently, any other
# value is refused.
REMOVED_KEYS: dict[type, dict[str, tuple[Any, str]]] = {
    EncoderConfig: {
        "trust_remote_code": (False, "no encoder runs remote code (MERT loads as a stock "
                                     "transformers HubertModel); delete the key"),
    },
}

# ----------------------------------------------------------------------- generic loading


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert mappings to dataclasses."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if _is_union(tp):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is not None and len(options) == 1:
            # ``X | None`` given a value: X's own error says what is wrong inside it.
            return _coerce(value, options[0], key)
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            f"{key}: {value!r} is not a valid {_type_name(tp)}"
        )
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(allowed)}{extra}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {
            _coerce(k, k_tp, f"{key}"): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()
        }
    if tp is float:
        number = _number(value)
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(number)
    if tp is int:
        number = _number(value)
        if isinstance(number, float) and isinstance(value, str) and number.is_integer():
            number = int(number)  # "1e4" written for a step count
        if not isinstance(number, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


# A number as people write it: digits with optional "_" grouping, a fraction, an exponent
# ("1e-4", "3E-5", "1_000", ".5"). YAML 1.1 reads the dotless exponent forms as strings.
_NUMBER = re.compile(r"[-+]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _number(value: Any) -> int | float | None:
    """``value`` as an int or float, from a YAML number or a number written as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip().replace("_", "")
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else None
    return None


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    removed = REMOVED_KEYS.get(cls, {})
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key in removed:
            old, why = removed[key]
            if value == old and type(value) is type(old):
                continue
            raise ConfigError(f"{full}={value!r}: this key was removed: {why}")
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown key {full!r}{extra} ({cls.__name__} accepts: {', '.join(names)})"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Turn a config dataclass (nested) into plain YAML-safe data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def field_type(schema: type | None, path: list[str]) -> Any:
    """The annotation of the field at ``path`` in dataclass ``schema`` (through mappings of
    dataclasses such as ``stages.<name>``), or None when the path leaves the schema."""
    tp: Any = schema
    for part in path:
        if _is_union(tp):  # X | None -> X
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = options[0] if len(options) == 1 else None
        if tp is not None and dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _is_text(tp: Any) -> bool:
    """True for ``str`` and ``str | None``: fields whose override value is taken as text."""
    if tp is str:
        return True
    return _is_union(tp) and set(typing.get_args(tp)) == {str, type(None)}


_NULLS = ("null", "Null", "NULL", "~")


def parse_override(text: str, schema: type | None = None) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and value.

    The value is parsed as YAML (``[a, b]``, ``{lora: 2e-4}``, ``true``, ``null``), except for
    a string field of ``schema``, which keeps the text as written so that a revision
    ``1.10`` or a name ``2024-01-01`` is not turned into a number or a date (quote it,
    ``'...'``, to get YAML's reading). Numbers such as ``1e-4`` reach float fields as
    strings and are converted there (``_coerce``).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    path = key.strip().split(".")
    if raw == "":
        return path, ""
    if _is_text(field_type(schema, path)) and raw.strip() not in _NULLS \
            and not raw.lstrip().startswith(("'", '"')):
        return path, raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    schema: type | None = None) -> dict[str, Any]:
    """A copy of raw config ``data`` with dotted overrides applied (before typing, so errors
    stay strict). ``schema`` is the dataclass the data describes; it decides which values
    stay text. The caller's mapping is never changed."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text, schema)
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return data


# --------------------------------------------------------------------- semantic checks


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate_adapter(cfg: AdapterConfig, key: str = "adapter") -> None:
    """Refuse adapter settings that cannot produce tokens."""
    _check(cfg.hidden_size > 0, f"{key}.hidden_size", cfg.hidden_size, "must be > 0")
    _check(cfg.num_layers >= 1, f"{key}.num_layers", cfg.num_layers, "must be >= 1")
    _check(cfg.num_heads >= 1, f"{key}.num_heads", cfg.num_heads, "must be >= 1")
    _check(0.0 <= cfg.dropout < 1.0, f"{key}.dropout", cfg.dropout, "must be in [0, 1)")
    _check(cfg.global_tokens >= 0, f"{key}.global_tokens", cfg.global_tokens, "must be >= 0")
    if cfg.name in ("qformer", "perceiver"):
        _check(cfg.num_queries >= 1, f"{key}.num_queries", cfg.num_queries,
               f"a {cfg.name} needs at least 1 query")
        _check(cfg.hidden_size % cfg.num_heads == 0, f"{key}.hidden_size", cfg.hidden_size,
               f"must be divisible by num_heads={cfg.num_heads}")
    if cfg.name == "qformer":
        _check(1 <= cfg.cross_attention_every <= cfg.num_layers,
               f"{key}.cross_attention_every", cfg.cross_attention_every,
               f"must be between 1 and num_layers={cfg.num_layers}")
    if cfg.name == "window_qformer":
        _check(cfg.window_frames >= 1, f"{key}.window_frames", cfg.window_frames,
               "must be >= 1")
        _check(cfg.queries_per_window >= 1, f"{key}.queries_per_window",
               cfg.queries_per_window, "must be >= 1")
        if cfg.window_stride is not None:
            _check(1 <= cfg.window_stride, f"{key}.window_stride", cfg.window_stride,
                   "must be >= 1")
        _check(cfg.hidden_size % cfg.num_heads == 0, f"{key}.hidden_size", cfg.hidden_size,
               f"must be divisible by num_heads={cfg.num_heads}")
    if cfg.pool in ("mean", "max"):
        _check((cfg.pool_frames is None) != (cfg.pool_rate_hz is None), f"{key}.pool",
               cfg.pool, "set exactly one of pool_frames or pool_rate_hz")
        if cfg.pool_frames is not None:
            _check(cfg.pool_frames >= 1, f"{key}.pool_frames", cfg.pool_frames, "must be >= 1")
        if cfg.pool_rate_hz is not None:
            _check(cfg.pool_rate_hz > 0, f"{key}.pool_rate_hz", cfg.pool_rate_hz,
                   "must be > 0")


def validate_encoder(cfg: EncoderConfig, key: str = "encoder") -> None:
    """Refuse encoder settings that cannot work."""
    _check(cfg.max_duration_s > 0, f"{key}.max_duration_s", cfg.max_duration_s, "must be > 0")
    _check(0 <= cfg.min_duration_s < cfg.max_duration_s, f"{key}.min_duration_s",
           cfg.min_duration_s, f"must be >= 0 and < max_duration_s={cfg.max_duration_s}")
    if isinstance(cfg.layers, str):
        _check(cfg.layers == "all", f"{key}.layers", cfg.layers,
               "an index, a list of indices, or 'all'")
    if isinstance(cfg.layers, list):
        _check(len(cfg.layers) > 0, f"{key}.layers", cfg.layers, "a non-empty list")
    if cfg.window_s is not None:
        _check(cfg.window_s > 0, f"{key}.window_s", cfg.window_s, "must be > 0")
    if cfg.hop_s is not None:
        _check(cfg.window_s is not None and 0 < cfg.hop_s <= cfg.window_s, f"{key}.hop_s",
               cfg.hop_s, "needs window_s and must be in (0, window_s]")


def validate_modality(name: str, cfg: ModalityConfig, num_llm_layers: int | None = None,
                      frame_rate: float | None = None) -> None:
    """Check one modality, including combinations across encoder, adapter and injection."""
    key = f"modalities.{name}"
    _check(name in KNOWN_MODALITIES, "modalities", name, f"one of {list(KNOWN_MODALITIES)}")
    validate_encoder(cfg.encoder, f"{key}.encoder")
    validate_adapter(cfg.adapter, f"{key}.adapter")
    inj = cfg.injection
    ikey = f"{key}.injection"
    _check(cfg.max_items >= 1, f"{key}.max_items", cfg.max_items, "must be >= 1")
    rate = frame_rate if frame_rate is not None else cfg.encoder.frame_rate
    if cfg.adapter.name == "window_qformer" and rate is not None:
        budget = int(cfg.encoder.max_duration_s * rate)
        _check(cfg.adapter.window_frames <= budget, f"{key}.adapter.window_frames",
               cfg.adapter.window_frames,
               f"the window is larger than the clip budget: max_duration_s="
               f"{cfg.encoder.max_duration_s} at {rate} frames/s gives {budget} frames")
    if inj.kind == "xattn":
        _check(inj.every_n_layers >= 1, f"{ikey}.every_n_layers", inj.every_n_layers,
               "must be >= 1")
        if num_llm_layers is not None:
            _check(inj.every_n_layers <= num_llm_layers, f"{ikey}.every_n_layers",
                   inj.every_n_layers, f"must be <= the LLM's {num_llm_layers} layers")
    if inj.kind == "prefix":
        _check(inj.prefix_len >= 1, f"{ikey}.prefix_len", inj.prefix_len, "must be >= 1")
        _check((inj.top_k_layers is None) != (inj.layers is None), f"{ikey}",
               {"top_k_layers": inj.top_k_layers, "layers": inj.layers},
               "set exactly one of top_k_layers or layers")
        if inj.top_k_layers is not None:
            _check(inj.top_k_layers >= 1, f"{ikey}.top_k_layers", inj.top_k_layers,
                   "must be >= 1")
            if num_llm_layers is not None:
                _check(inj.top_k_layers <= num_llm_layers, f"{ikey}.top_k_layers",
                       inj.top_k_layers,
                       f"a prefix on more layers than the LLM has ({num_llm_layers})")
        if inj.layers is not None:
            _check(len(inj.layers) > 0 and len(set(inj.layers)) == len(inj.layers),
                   f"{ikey}.layers", inj.layers, "a non-empty list of distinct layers")
            if num_llm_layers is not None:
                bad = [i for i in inj.layers if not 0 <= i < num_llm_layers]
                _check(not bad, f"{ikey}.layers", inj.layers,
                       f"layers {bad} do not exist; the LLM has layers 0..{num_llm_layers - 1}")
        # MU-LLaMA adds the modality's tokens to the learned prefix: one token is
        # broadcast, otherwise the counts must match.
        if cfg.adapter.name in ("qformer", "perceiver"):
            n = cfg.adapter.num_queries
            _check(n in (1, inj.prefix_len), f"{key}.adapter.num_queries", n,
                   f"prefix injection adds tokens to the prefix: use 1 query or "
                   f"prefix_len={inj.prefix_len}")
        elif cfg.adapter.pool != "global":
            raise ConfigError(
                f"{key}.adapter: prefix injection needs a fixed token count; use "
                f"adapter.pool=global (one token, MU-LLaMA) or a qformer/perceiver with "
                f"num_queries equal to injection.prefix_len, got adapter.name="
                f"{cfg.adapter.name!r} with pool={cfg.adapter.pool!r}"
            )


def validate_model_config(cfg: ModelConfig, num_llm_layers: int | None = None) -> None:
    """Check the whole model config; pass the LLM's layer count once it is known."""
    _check(len(cfg.modalities) >= 1, "modalities", cfg.modalities, "at least one modality")
    if cfg.llm.policy == "lora":
        _check(cfg.llm.lora.r >= 1, "llm.lora.r", cfg.llm.lora.r, "must be >= 1")
        _check(len(cfg.llm.lora.target_modules) > 0, "llm.lora.target_modules",
               cfg.llm.lora.target_modules, "at least one module name")
    if cfg.llm.quantization != "none":
        _check(cfg.llm.policy != "full", "llm.policy", cfg.llm.policy,
               "a quantised LLM cannot be fully fine-tuned; use lora (QLoRA) or frozen")
    for name, mod in cfg.modalities.items():
        validate_modality(name, mod, num_llm_layers)
    if cfg.music_output is not None:
        validate_music_output(cfg.music_output)


def checked_from_dict(cls: type, data: dict[str, Any], where: str,
                      validate: Callable[[Any], None] | None = None, prefix: str = "") -> Any:
    """``from_dict(cls, data, prefix)``, then ``validate`` on it; a ``ConfigError`` from either
    is prefixed with ``where`` (the file ``data`` came from), so the message names the file."""
    try:
        cfg = from_dict(cls, data, prefix)
        if validate is not None:
            validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def _is_training_config(data: dict[str, Any]) -> bool:
    return isinstance(data.get("model"), dict) and "llm" not in data


def load_model_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None
                      ) -> ModelConfig:
    """Load a model config and validate it.

    ``source`` is a YAML path, a shipped config's name (``offline-default``,
    ``projects/mu-llama/train``: ``resolve_config_path``) or raw data; a model config, or a
    training config whose ``model:`` section is used. Dotted ``overrides`` are relative to
    the model (``llm.policy=frozen``) and applied before presets are expanded. The caller's
    data is never changed.
    """
    if isinstance(source, dict):
        data, where = copy.deepcopy(source), "<dict>"
    else:
        data, path = read_config(source)
        where = str(path)
    # Which kind the file is can hide behind a top-level preset: look at it composed.
    if _is_training_config(compose(data, where)):
        data["model"] = apply_overrides(data.get("model") or {}, overrides or [], ModelConfig)
        data = compose(data, where)["model"]
    else:
        data = compose(apply_overrides(data, overrides or [], ModelConfig), where)
    return checked_from_dict(ModelConfig, data, where, validate_model_config)


def resolve_model_source(source: Any) -> Any:
    """What ``MusicLLM.load`` takes for ``source``: a model directory or a config object as
    given, a YAML path, or the file of a shipped config named by ``source``.

    ``"offline-default"`` -> ``.../configs/models/offline-default.yaml``. An existing path
    always wins over a name; neither raises ``ModelLoadError`` with the known names.
    """
    from mullm.errors import ModelLoadError

    if isinstance(source, ModelConfig) or Path(source).expanduser().exists():
        return source
    try:
        return resolve_config_path(source)
    except ConfigError as exc:
        raise ModelLoadError(f"{source!r} is not a model directory. {exc}") from None


__all__ = [
    "AdapterConfig", "ConfigError", "EncoderConfig", "InjectionConfig", "LLMConfig",
    "LoRAConfig", "ModalityConfig", "ModelConfig", "MusicDecoderConfig", "MusicOutputConfig",
    "ProjectorConfig", "apply_overrides", "checked_from_dict", "compose", "field_type",
    "from_dict", "load_model_config", "parse_override", "read_config", "read_yaml",
    "resolve_config_path", "resolve_model_source", "to_dict", "validate_adapter",
    "validate_encoder", "validate_modality", "validate_model_config",
]
