"""Frozen image and video encoders: CLIP (transformers and open_clip), ViT and ViViT.

Images are one "sample" each: ``sample_rate = 1``, lengths are all 1, and ``frame_rate`` is
the number of output tokens per image (patches + CLS), so ``num_frames(1)`` is the token
count. Every layer's tokens are returned, (B, L, tokens, D), with an all-True mask.

Video (ViViT) takes (B, F, C, H, W). ViViT's tubelet embedding and position table fix the
clip length, so one clip is exactly ``num_frames`` input frames (32 for
``google/vivit-b-16x2-kinetics400``): ``sample_rate`` is that frame count, lengths must equal
it (sample longer or shorter videos with ``mullm.image.load_video_frames(num_frames=...)``;
padded stacks are refused rather than encoded with black frames), and ``frame_rate`` is the
token count per clip.

Preprocessing follows each checkpoint's own settings (``encoder.image_spec``, an
``mullm.image.ImageSpec``); use ``encoder.load(paths)`` to get a ready batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from mullm.config import EncoderConfig
from mullm.encoders import weights as W
from mullm.encoders.base import Encoder, EncoderOutput
from mullm.errors import ConfigError, ModelLoadError
from mullm.image import (
    CLIP_MEAN,
    CLIP_STD,
    ImageSpec,
    load_images,
    load_video_frames,
    spec_from_hf_processor,
)
from mullm.utils.dtypes import torch_dtype


class _ImageEncoderBase(Encoder):
    """Shared image logic: rate attributes, length checks, batch loading, frozen eval mode."""

    modality = "image"
    sample_rate = 1
    image_spec: ImageSpec

    def _set_tokens(self, tokens: int, num_layers: int, hidden: int) -> None:
        self.tokens = int(tokens)
        self.frame_rate = float(tokens)
        self.num_layers = int(num_layers)
        self.hidden_size = int(hidden)

    def frame_spec(self) -> dict:
        """Tokens for ``num_samples`` images (always 1 per batch row) or one video clip."""
        return {"rule": "per_item", "tokens": int(self.tokens), "per": int(self.sample_rate)}

    def load(self, paths: Sequence[str | os.PathLike]) -> tuple[torch.Tensor, torch.Tensor]:
        """Open, validate and preprocess image files into an encoder batch."""
        return load_images(paths, self.image_spec)

    def _check(self, inputs: torch.Tensor, lengths: torch.Tensor) -> None:
        if inputs.dim() != 4:
            raise ValueError(f"{type(self).__name__}: expected images (B, 3, H, W), got shape "
                             f"{tuple(inputs.shape)}")
        if not bool((lengths == 1).all()):
            raise ValueError(f"{type(self).__name__}: each batch row is one image, so lengths "
                             f"must all be 1, got {lengths.tolist()}")
        h, w = self.image_spec.out_size
        if inputs.shape[1:] != (3, h, w):
            raise ValueError(f"{type(self).__name__}: expected images of shape (3, {h}, {w}) "
                             f"(use encoder.load or mullm.image with encoder.image_spec), got "
                             f"{tuple(inputs.shape[1:])}")

    def _finish(self, states: Sequence[torch.Tensor], device: torch.device) -> EncoderOutput:
        """Stack per-layer tokens into (B, L, tokens, D) float32 with an all-True mask, both
        on ``device`` (the input's)."""
        hidden = torch.stack([s.float() for s in states], dim=1).to(device)
        if hidden.shape[2] != self.tokens:
            raise RuntimeError(f"{type(self).__name__}: produced {hidden.shape[2]} tokens, "
                               f"expected {self.tokens}")
        mask = torch.ones(hidden.shape[0], hidden.shape[2], dtype=torch.bool, device=device)
        return EncoderOutput(hidden_states=hidden, mask=mask)


def _from_pretrained(cls: Any, source: str, config: EncoderConfig, **kw: Any) -> Any:
    """``cls.from_pretrained`` that turns a missing checkpoint into a clear error and refuses
    missing or mis-shaped weights."""
    try:
        model, info = cls.from_pretrained(source, cache_dir=config.cache_dir,
                                          dtype=torch_dtype(config.dtype),
                                          output_loading_info=True, **kw)
    except OSError as exc:
        raise W.missing_weights_error(f"{cls.__name__} checkpoint", source,
                                      "set encoder.checkpoint to a hub id or local folder") from exc
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ModelLoadError(f"{source}: {cls.__name__} weights incomplete: missing "
                             f"{sorted(info['missing_keys'])[:6]}, mismatched "
                             f"{list(info['mismatched_keys'])[:6]}")
    return model


def _processor(cls: Any, source: str, config: EncoderConfig) -> Any:
    try:
        return cls.from_pretrained(source, cache_dir=config.cache_dir)
    except OSError as exc:
        raise W.missing_weights_error(f"{cls.__name__} preprocessor_config.json", source) from exc


class _HFVisionEncoder(_ImageEncoderBase):
    """A transformers vision tower: random from ``options.<config_key>`` or from a checkpoint."""

    model_cls: str
    config_cls: str
    processor_cls: str
    config_key: str
    default_checkpoint: str
    extra_kwargs: dict[str, Any] = {}

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        W.check_options(config, {self.config_key, "image_processor"})
        import transformers

        model_cls = getattr(transformers, self.model_cls)
        proc_cls = getattr(transformers, self.processor_cls)
        opts = config.options
        if self.config_key in opts:
            # Random weights from an explicit config: tests and benchmarks only.
            cfg = getattr(transformers, self.config_cls)(**opts[self.config_key])
            model = model_cls(cfg, **self.extra_kwargs).to(torch_dtype(config.dtype))
            proc = proc_cls(**opts.get("image_processor", {}))
        else:
            source = config.checkpoint or self.default_checkpoint
            model = _from_pretrained(model_cls, source, config, **self.extra_kwargs)
            proc = _processor(proc_cls, source, config)
        self.model = model.eval().requires_grad_(False)
        self.image_spec = spec_from_hf_processor(proc)
        cfg = model.config
        size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
        if self.image_spec.out_size != (size, size):
            raise ConfigError(f"{config.name}: the image processor makes "
                              f"{self.image_spec.out_size} images but the model expects "
                              f"{size}x{size}")
        self._set_tokens(self._token_count(cfg), cfg.num_hidden_layers + 1, cfg.hidden_size)
        if self.modality == "video":
            self.sample_rate = int(cfg.num_frames)  # input frames per clip
        W.check_declared(self)

    def _token_count(self, cfg: Any) -> int:
        size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
        return (size // cfg.patch_size) ** 2 + 1

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, 3, H, W) -> every hidden state (B, layers + 1, tokens, D)."""
        self._check(inputs, lengths)
        param = next(self.model.parameters())
        out = self.model(pixel_values=inputs.to(param.device, param.dtype),
                         output_hidden_states=True)
        return self._finish(out.hidden_states, inputs.device)


class CLIPVisionEncoder(_HFVisionEncoder):
    """CLIP's vision tower via transformers ``CLIPVisionModel`` (default ViT-B/32)."""

    model_cls = "CLIPVisionModel"
    config_cls = "CLIPVisionConfig"
    processor_cls = "CLIPImageProcessor"
    config_key = "vision_config"
    default_checkpoint = "openai/clip-vit-base-patch32"


class ViTEncoder(_HFVisionEncoder):
    """ViT via transformers ``ViTModel`` (M2UGen's image encoder, default ViT-B/16 in21k)."""

    model_cls = "ViTModel"
    config_cls = "ViTConfig"
    processor_cls = "ViTImageProcessor"
    config_key = "vit_config"
    default_checkpoint = "google/vit-base-patch16-224-in21k"
    extra_kwargs = {"add_pooling_layer": False}


class ViViTEncoder(_HFVisionEncoder):
    """ViViT via transformers ``VivitModel`` for video (B, F, C, H, W) (M2UGen's video
    encoder, default ``google/vivit-b-16x2-kinetics400``)."""

    modality = "video"
    model_cls = "VivitModel"
    config_cls = "VivitConfig"
    processor_cls = "VivitImageProcessor"
    config_key = "vivit_config"
    default_checkpoint = "google/vivit-b-16x2-kinetics400"
    extra_kwargs = {"add_pooling_layer": False}

    def _token_count(self, cfg: Any) -> int:
        t, h, w = cfg.tubelet_size
        return (cfg.num_frames // t) * (cfg.image_size // h) * (cfg.image_size // w) + 1

    def load(self, paths: Sequence[str | os.PathLike]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame folders or ``.npy`` stacks -> (B, F, 3, H, W), sampled to ``num_frames``."""
        frames = int(self.model.config.num_frames)
        x = torch.stack([load_video_frames(p, self.image_spec, frames) for p in paths])
        return x, torch.full((len(paths),), frames, dtype=torch.long)

    def _check(self, inputs: torch.Tensor, lengths: torch.Tensor) -> None:
        frames = int(self.model.config.num_frames)
        h, w = self.image_spec.out_size
        if inputs.dim() != 5 or inputs.shape[1:] != (frames, 3, h, w):
            raise ValueError(f"ViViT: expected video (B, {frames}, 3, {h}, {w}), got "
                             f"{tuple(inputs.shape)}; sample clips to {frames} frames with "
                             f"mullm.image.load_video_frames(num_frames={frames})")
        if not bool((lengths == frames).all()):
            raise ValueError(f"ViViT: every clip must have exactly {frames} real frames (its "
                             f"position table is fixed), got lengths {lengths.tolist()}; padded "
                             f"frame stacks are refused, resample with load_video_frames")


class OpenClipEncoder(_ImageEncoderBase):
    """CLIP's vision tower via open_clip (any ViT model name; ``pretrained`` tag for users)."""

    OPTIONS = {"model", "pretrained", "model_kwargs"}

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        W.check_options(config, self.OPTIONS)
        import open_clip

        opts = config.options
        name = opts.get("model", "ViT-B-32")
        # checkpoint: an open_clip pretrained tag ("openai", "laion2b_s34b_b79k") or a local
        # weights file; none builds random weights (tests only).
        pretrained = opts.get("pretrained", config.checkpoint)
        if pretrained and os.path.sep in str(pretrained) and not os.path.isfile(
                os.path.expanduser(str(pretrained))):
            raise W.missing_weights_error(f"open_clip {name} weights", pretrained)
        try:
            model = open_clip.create_model(name, pretrained=pretrained, cache_dir=config.cache_dir,
                                           **opts.get("model_kwargs", {}))
        except RuntimeError as exc:
            if "download" in str(exc).lower():
                raise W.missing_weights_error(f"open_clip {name} pretrained={pretrained!r}",
                                              pretrained) from exc
            raise ModelLoadError(f"open_clip {name}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - hub errors differ by version; name the cause
            if "offline" in str(exc).lower() or "connect" in str(exc).lower() or isinstance(
                    exc, OSError):
                raise W.missing_weights_error(f"open_clip {name} pretrained={pretrained}",
                                              pretrained) from exc
            raise
        visual = model.visual
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "grid_size"):
            raise ConfigError(f"encoder.options.model={name!r}: only open_clip ViT towers are "
                              f"supported (got {type(visual).__name__})")
        # The text tower is not needed: keep only the vision tower in memory.
        self.visual = visual.to(torch_dtype(config.dtype)).eval().requires_grad_(False)
        del model
        pcfg = getattr(visual, "preprocess_cfg", {}) or {}
        size = pcfg.get("size", visual.image_size)
        size = size if isinstance(size, int) else tuple(size)[0]
        self.image_spec = ImageSpec(
            size=size, crop=(size, size), resample=pcfg.get("interpolation", "bicubic"),
            mean=tuple(pcfg.get("mean", CLIP_MEAN)), std=tuple(pcfg.get("std", CLIP_STD)))
        gh, gw = visual.grid_size
        width = visual.class_embedding.shape[-1]
        self._set_tokens(gh * gw + 1, len(visual.transformer.resblocks), width)
        W.check_declared(self)

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """(B, 3, H, W) -> every block's tokens (B, blocks, CLS + patches, D)."""
        self._check(inputs, lengths)
        cls = self.visual.class_embedding
        out = self.visual.forward_intermediates(inputs.to(cls.device, cls.dtype), output_fmt="NLC",
                                                output_extra_tokens=True,
                                                intermediates_only=True)
        states = [torch.cat([p, t], dim=1) for p, t in
                  zip(out["image_intermediates_prefix"], out["image_intermediates"])]
        return self._finish(states, inputs.device)


__all__ = ["CLIPVisionEncoder", "OpenClipEncoder", "ViTEncoder", "ViViTEncoder"]
