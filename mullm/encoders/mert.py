"""MERT-v1 (95M / 330M) as a stock transformers ``HubertModel``.

MERT's hub repos ship a custom ``MERTModel`` that only renames HuBERT (and, under current
transformers, its remote code silently returns no hidden states). So we never run remote
code: ``HubertConfig`` is built from the checkpoint's own ``config.json`` (MERT-only keys
are dropped, and the two MERT options HuBERT cannot express, ``feature_extractor_cqt`` and
``deepnorm``, are refused when true), the weights are loaded with
``HubertModel.from_pretrained`` and every missing, unexpected or mismatched key is an
error. Legacy ``weight_g`` / ``weight_v`` names of the convolutional position embedding are
renamed by transformers on load.

Input is 24 kHz mono, normalised per clip (zero mean, unit variance: the checkpoint's
``preprocessor_config.json`` ``do_normalize``); output is 75 Hz (a 320-sample conv stride)
with all hidden states: 13 x 768 for 95M, 25 x 1024 for 330M.

Batching: MERT-95M's first conv layer uses GroupNorm over time, so zero padding changes a
clip's features; for such checkpoints clips are encoded at their own length (equal lengths
are still batched together). Layer-norm checkpoints (330M) are batched with an attention
mask, which is padding-invariant.

Long audio: with ``window_s`` set, a clip longer than the window is encoded in consecutive
non-overlapping windows whose frames are concatenated, so memory is bounded and every
second is covered (MERT was trained on 5 s crops; 30 s windows are a good default).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from mullm.config import EncoderConfig
from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.encoders.frames import conv_output_length, receptive_field
from mullm.errors import ConfigError, ModelLoadError
from mullm.utils.dtypes import torch_dtype

# config.json keys that belong to the hub's remote-code wrapper, not to HuBERT.
_DROP_KEYS = ("model_type", "auto_map", "architectures", "_name_or_path",
              "transformers_version", "torch_dtype", "dtype")
# MERT options with no HuBERT equivalent: refused when true.
_REFUSE_TRUE = ("feature_extractor_cqt", "deepnorm")
# MERT keys that are accepted and ignored: attention_relax only rescales logits inside
# softmax for fp16 stability, which leaves the result unchanged.
_IGNORED = ("attention_relax", "feature_extractor_cqt_bins", "sample_rate")



def _read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: {what} must be a JSON object")
    return data


def resolve_file(checkpoint: str, filename: str, cache_dir: str | None = None,
                 required: bool = True) -> str | None:
    """Path of ``filename`` in a local checkpoint folder or a hub repo (downloaded once)."""
    if os.path.isdir(checkpoint):
        path = os.path.join(checkpoint, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise ModelLoadError(f"{checkpoint}: checkpoint folder has no {filename}")
        return None
    if os.path.exists(checkpoint):
        raise ModelLoadError(
            f"{checkpoint}: expected a checkpoint folder (config.json + weights) or a hub id"
        )
    from transformers.utils import cached_file

    try:
        path = cached_file(checkpoint, filename, cache_dir=cache_dir,
                           _raise_exceptions_for_missing_entries=required)
    except OSError as exc:
        raise ModelLoadError(
            f"{checkpoint}: cannot get {filename} ({str(exc).splitlines()[0]}); give a "
            f"local folder, or a hub id with network access (HF_HUB_OFFLINE unset)"
        ) from None
    return path


def hubert_config_from_mert(data: dict[str, Any], where: str = "config.json") -> Any:
    """Build a ``HubertConfig`` from a MERT ``config.json``; refuse what HuBERT lacks."""
    from transformers import HubertConfig

    for key in _REFUSE_TRUE:
        if data.get(key):
            raise ModelLoadError(
                f"{where}: {key}=true is a MERT variant that transformers' HubertModel "
                f"cannot reproduce; use a MERT-v1 checkpoint (95M or 330M) where it is false"
            )
    clean = {k: v for k, v in data.items() if k not in _DROP_KEYS}
    return HubertConfig(**clean)


class MERTEncoder(Encoder):
    """MERT-v1 via ``HubertModel``: 24 kHz in, 75 Hz out, all hidden states."""

    modality = "audio"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        if not config.checkpoint:
            raise ConfigError(
                "encoder.checkpoint is required for mert: a hub id such as "
                "'m-a-p/MERT-v1-95M' / 'm-a-p/MERT-v1-330M', or a local folder"
            )
        known = {"normalize", "window_batch", "pad_multiple_s"}
        unknown = sorted(set(config.options) - known)
        if unknown:
            raise ConfigError(f"encoder.options: unknown mert option(s) {unknown}; "
                              f"known: {sorted(known)}")
        # Most windows (or clips) per forward call: bounds memory on long files.
        self.window_batch = int(config.options.get("window_batch", 32))
        # Pad each batch to a multiple of this many seconds (masked models only), so
        # torch.compile sees a few shapes instead of one per batch.
        self.pad_multiple_s = config.options.get("pad_multiple_s")
        ckpt, cache_dir = config.checkpoint, config.cache_dir
        cfg_path = resolve_file(ckpt, "config.json", cache_dir)
        raw = _read_json(cfg_path, "model config")
        hub_cfg = hubert_config_from_mert(raw, cfg_path)
        pre_path = resolve_file(ckpt, "preprocessor_config.json", cache_dir, required=False)
        pre = _read_json(pre_path, "preprocessor config") if pre_path else {}
        native_sr = int(pre.get("sampling_rate") or raw.get("sample_rate") or 24000)
        if config.sample_rate is not None and config.sample_rate != native_sr:
            raise ConfigError(
                f"encoder.sample_rate={config.sample_rate} but the checkpoint expects "
                f"{native_sr} Hz; leave it unset (audio is resampled to {native_sr})"
            )
        self.normalize = bool(config.options.get("normalize", pre.get("do_normalize", True)))
        self.sample_rate = native_sr
        self.kernels = list(hub_cfg.conv_kernel)
        self.strides = list(hub_cfg.conv_stride)
        self.frame_rate = native_sr / math.prod(self.strides)
        if config.frame_rate is not None and abs(config.frame_rate - self.frame_rate) > 1e-6:
            raise ConfigError(
                f"encoder.frame_rate={config.frame_rate} but this checkpoint gives "
                f"{self.frame_rate} Hz; leave it unset"
            )
        self.hidden_size = int(hub_cfg.hidden_size)
        self.num_layers = int(hub_cfg.num_hidden_layers) + 1
        for key, value in (("hidden_size", self.hidden_size), ("num_layers", self.num_layers)):
            given = getattr(config, key)
            if given is not None and given != value:
                raise ConfigError(f"encoder.{key}={given} but the checkpoint has {value}")
        self.min_samples = receptive_field(self.kernels, self.strides)
        self.window = None
        if config.window_s is not None:
            if config.hop_s is not None and abs(config.hop_s - config.window_s) > 1e-9:
                raise ConfigError(
                    f"encoder.hop_s={config.hop_s}: mert concatenates windows, so they must "
                    f"not overlap; set hop_s equal to window_s ({config.window_s}) or unset"
                )
            self.window = round(config.window_s * native_sr)
            if self.window < self.min_samples:
                raise ConfigError(f"encoder.window_s={config.window_s} is shorter than one "
                                  f"frame ({self.min_samples} samples)")
        # GroupNorm over time makes padding leak: encode clips at their own length.
        self.per_clip = hub_cfg.feat_extract_norm == "group"
        self.model = self._load(ckpt, hub_cfg, cache_dir, torch_dtype(config.dtype))
        self._weights_hash: str | None = None
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _load(ckpt: str, hub_cfg: Any, cache_dir: str | None, dtype: torch.dtype) -> Any:
        from transformers import HubertModel

        try:
            model, info = HubertModel.from_pretrained(
                ckpt, config=hub_cfg, cache_dir=cache_dir, dtype=dtype,
                output_loading_info=True, trust_remote_code=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{ckpt}: cannot load MERT weights: {exc}") from None
        problems = []
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            keys = sorted(str(k) for k in info.get(kind) or [])
            if keys:
                shown = ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20})" if len(keys) > 20
                                                 else "")
                problems.append(f"{kind.replace('_', ' ')}: {shown}")
        if info.get("error_msgs"):
            problems.append("errors: " + "; ".join(map(str, info["error_msgs"])))
        if problems:
            raise ModelLoadError(
                f"{ckpt}: the weights do not match the HubertModel built from its "
                f"config.json (strict loading): " + " | ".join(problems)
            )
        return model.eval()

    def _frames_one(self, n: int) -> int:
        return conv_output_length(max(n, self.min_samples), self.kernels, self.strides)

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        if self.window is None or n <= self.window:
            return [(0, n)]
        return [(s, min(s + self.window, n)) for s in range(0, n, self.window)]

    def frame_spec(self) -> dict:
        """The conv stack's exact frame count (per window when windowed)."""
        return {"rule": "conv", "kernels": list(self.kernels), "strides": list(self.strides),
                "min_samples": int(self.min_samples), "window": self.window}

    def fingerprint(self) -> dict:
        """Base fingerprint plus a hash of the loaded weights and the input settings."""
        if self._weights_hash is None:
            from mullm.utils.hashing import module_weights_hash

            self._weights_hash = module_weights_hash(self.model)
        return {**super().fingerprint(), "weights_sha256": self._weights_hash,
                "normalize": self.normalize, "window_s": self.config.window_s,
                "dtype": self.config.dtype}

    def _run(self, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Encode clips (B, N) with valid lengths; returns (B, L, T, D) for max length."""
        dev = x.device
        n_valid = torch.tensor(lengths, device=dev)
        valid = torch.arange(x.shape[1], device=dev)[None, :] < n_valid[:, None]
        x = x * valid
        if self.normalize:
            # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm over each clip's samples.
            cnt = n_valid[:, None].to(torch.float32)
            mean = x.sum(1, keepdim=True) / cnt
            var = ((x - mean) * valid).pow(2).sum(1, keepdim=True) / cnt
            x = (x - mean) / torch.sqrt(var + 1e-7) * valid
        if x.shape[1] < self.min_samples:
            x = torch.nn.functional.pad(x, (0, self.min_samples - x.shape[1]))
        dtype = next(self.model.parameters()).dtype
        kwargs: dict[str, Any] = {"output_hidden_states": True}
        # Clips shorter than one receptive field were zero-padded to it, as when alone.
        eff = [max(n, self.min_samples) for n in lengths]
        if not self.per_clip and any(e < x.shape[1] for e in eff):
            eff_t = torch.tensor(eff, device=dev)
            mask = torch.arange(x.shape[1], device=dev)[None, :] < eff_t[:, None]
            kwargs["attention_mask"] = mask.long()
        out = self.model(x.to(dtype), **kwargs)
        return torch.stack(out.hidden_states, 1)

    def _encode_windows(self, x: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """One (L, T_i, D) tensor per clip, over its consecutive windows."""
        pieces: list[list[torch.Tensor]] = [[] for _ in lengths]
        jobs = []  # (clip index, start, end) for every window of every clip
        for i, n in enumerate(lengths):
            jobs += [(i, a, b) for a, b in self._chunks(n)]
        if self.per_clip:
            groups: dict[int, list[tuple[int, int, int]]] = {}
            for job in jobs:
                groups.setdefault(job[2] - job[1], []).append(job)
            batches = list(groups.values())
        else:
            batches = [jobs]
        step = max(1, self.window_batch)
        batches = [b[k:k + step] for b in batches for k in range(0, len(b), step)]
        results: dict[tuple[int, int], torch.Tensor] = {}
        for batch in batches:
            size = max(b - a for _, a, b in batch)
            if self.pad_multiple_s and not self.per_clip:
                pad_step = max(1, round(float(self.pad_multiple_s) * self.sample_rate))
                size = -(-size // pad_step) * pad_step
            xs = torch.zeros(len(batch), size, device=x.device, dtype=torch.float32)
            for j, (i, a, b) in enumerate(batch):
                xs[j, :b - a] = x[i, a:b]
            h = self._run(xs, [b - a for _, a, b in batch])
            for j, (i, a, b) in enumerate(batch):
                results[(i, a)] = h[j, :, :self._frames_one(b - a)]
        for i, a, _ in jobs:
            pieces[i].append(results[(i, a)])
        return [torch.cat(p, 1) for p in pieces]

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, samples at 24 kHz) -> (B, num_layers, T, hidden_size) at 75 Hz, mask (B, T)."""
        device = next(self.model.parameters()).device
        x = inputs.to(device=device, dtype=torch.float32)
        lens = [int(n) for n in lengths.tolist()]
        per_clip = self._encode_windows(x, lens)
        frames = torch.tensor([p.shape[1] for p in per_clip], device=device)
        total = int(frames.max())
        out = per_clip[0].new_zeros(len(lens), self.num_layers, total, self.hidden_size)
        for i, p in enumerate(per_clip):
            out[i, :, :p.shape[1]] = p
        # Computed on the model's device, returned on the input's (the contract).
        return EncoderOutput(hidden_states=out.to(inputs.device),
                             mask=frame_mask(frames, total).to(inputs.device))


__all__ = ["MERTEncoder", "conv_output_length", "hubert_config_from_mert", "receptive_field",
           "resolve_file"]
