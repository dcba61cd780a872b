"""Image and video-frame input: the one place that turns files into checked pixel tensors.

Like ``mullm.audio`` for sound, every image is opened, validated and converted the same way
before any encoder sees it: decoded with PIL (EXIF rotation applied), made RGB (transparent
pixels composited on white), refused with the file named when it is empty, not an image,
truncated or too small; then resized, centre-cropped and normalised by an ``ImageSpec`` that
the encoder derives from its checkpoint's own preprocessing settings.

Video is a stack of frames, from a folder of image files (sorted by name) or a ``.npy`` array
(F, H, W, 3) / (F, 3, H, W), uint8 or float in [0, 1]; ``num_frames`` samples it uniformly to
the length a video encoder expects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mullm.errors import AudioError
from mullm.utils.files import check_input_file, load_npy

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_SIDE = 16  # pixels; smaller images carry no usable content for a 224-px encoder
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageError(AudioError):
    """An image or video input that cannot be decoded or fails validation."""


@dataclass(frozen=True)
class ImageSpec:
    """How an encoder wants its pixels: resize, crop, rescale and normalisation settings.

    ``size`` is the shortest edge (int) or an exact (height, width); ``crop`` the centre
    crop (height, width) or None; pixels are scaled by ``rescale`` (minus 1 when ``offset``,
    giving [-1, 1]) and then normalised with ``mean`` / ``std``.
    """

    size: int | tuple[int, int] = 224
    crop: tuple[int, int] | None = (224, 224)
    resample: str = "bicubic"
    rescale: float = 1 / 255
    offset: bool = False
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    @property
    def out_size(self) -> tuple[int, int]:
        """(height, width) of the tensors this spec produces."""
        if self.crop is not None:
            return tuple(self.crop)
        if isinstance(self.size, int):
            raise ValueError("an ImageSpec without crop needs an exact (height, width) size")
        return tuple(self.size)


def spec_from_hf_processor(proc: object) -> ImageSpec:
    """Read an ``ImageSpec`` from a transformers image processor (CLIP, ViT, ViViT)."""
    size = getattr(proc, "size", None) or {}
    if "shortest_edge" in size:
        resize: int | tuple[int, int] = int(size["shortest_edge"])
    else:
        resize = (int(size["height"]), int(size["width"]))
    crop = None
    if getattr(proc, "do_center_crop", False) and getattr(proc, "crop_size", None):
        crop = (int(proc.crop_size["height"]), int(proc.crop_size["width"]))
    elif isinstance(resize, int):
        crop = (resize, resize)
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}.get(
        int(getattr(proc, "resample", 3)), "bicubic")
    mean = tuple(proc.image_mean) if getattr(proc, "do_normalize", True) else (0.0, 0.0, 0.0)
    std = tuple(proc.image_std) if getattr(proc, "do_normalize", True) else (1.0, 1.0, 1.0)
    return ImageSpec(size=resize, crop=crop, resample=resample,
                     rescale=float(getattr(proc, "rescale_factor", 1 / 255)),
                     offset=bool(getattr(proc, "offset", False) or False), mean=mean, std=std)


def _pil():  # noqa: ANN202 - lazy import keeps `import mullm` light
    from PIL import Image, ImageOps
    return Image, ImageOps


def open_image(path: str | os.PathLike, min_side: int = MIN_SIDE) -> object:
    """Open and fully decode an image as RGB, or raise ``ImageError`` naming the file."""
    Image, ImageOps = _pil()
    path = check_input_file(path, "image", ImageError)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not inside an encoder
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image is too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL raises UnidentifiedImageError (an OSError) for non-images, OSError for
        # truncated data, SyntaxError/ValueError for some malformed headers.
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if min(rgb.size) < min_side:
        raise ImageError(f"{path}: image is {rgb.size[0]}x{rgb.size[1]} pixels; at least "
                         f"{min_side} px per side is needed")
    return rgb


def _to_rgb(img: object) -> object:
    Image, _ = _pil()
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: a plain convert("RGB") turns transparent areas black.
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if img.mode == "I;16" or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255).astype(np.uint8))
    return img.convert("RGB")


def preprocess(img: object, spec: ImageSpec) -> torch.Tensor:
    """An RGB PIL image -> normalised (3, H, W) float tensor as ``spec`` says."""
    Image, _ = _pil()
    resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR,
                "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[spec.resample]
    w, h = img.size
    if isinstance(spec.size, int):
        # Shortest edge to ``size``, the long edge truncated as transformers does.
        if w <= h:
            new = (spec.size, max(1, int(spec.size * h / w)))
        else:
            new = (max(1, int(spec.size * w / h)), spec.size)
    else:
        new = (spec.size[1], spec.size[0])
    if new != (w, h):
        img = img.resize(new, resample=resample)
    if spec.crop is not None:
        ch, cw = spec.crop
        w, h = img.size
        if cw > w or ch > h:  # HF pads in this case; resizing first makes it rare
            img = img.resize((max(w, cw), max(h, ch)), resample=resample)
            w, h = img.size
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    arr = np.asarray(img, dtype=np.float32) * spec.rescale
    if spec.offset:
        arr = arr - 1.0
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image(path: str | os.PathLike, spec: ImageSpec, min_side: int = MIN_SIDE
               ) -> torch.Tensor:
    """Open, validate and preprocess one image: (3, H, W)."""
    return preprocess(open_image(path, min_side), spec)


def load_images(paths: Sequence[str | os.PathLike], spec: ImageSpec,
                min_side: int = MIN_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of images (B, 3, H, W) and their lengths (all 1), the encoder input format."""
    if not paths:
        raise ValueError("load_images: no image paths given")
    x = torch.stack([load_image(p, spec, min_side) for p in paths])
    return x, torch.ones(len(paths), dtype=torch.long)


def _sample(n: int, num_frames: int | None) -> list[int]:
    """Frame indices: all, or ``num_frames`` spread uniformly (repeating when too few)."""
    if num_frames is None:
        return list(range(n))
    return [min(n - 1, int((i + 0.5) * n / num_frames)) for i in range(num_frames)]


def load_video_frames(source: str | os.PathLike, spec: ImageSpec,
                      num_frames: int | None = None, min_side: int = MIN_SIDE) -> torch.Tensor:
    """A frame stack (F, 3, H, W) from a folder of frame images or a ``.npy`` array;
    ``num_frames`` samples it uniformly to a fixed length."""
    Image, _ = _pil()
    source = Path(source)
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageError(f"{source}: folder has no frame images ({', '.join(IMAGE_SUFFIXES)})")
        return torch.stack([load_image(files[i], spec, min_side)
                            for i in _sample(len(files), num_frames)])
    if source.suffix.lower() != ".npy":
        raise ImageError(f"{source}: expected a folder of frames or a .npy array of frames")
    arr = load_npy(source, ImageError, kind="video frame")
    if arr.ndim != 4 or 0 in arr.shape:
        raise ImageError(f"{source}: expected frames (F, H, W, 3) or (F, 3, H, W), "
                         f"got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] != 3:
        raise ImageError(f"{source}: frames need 3 colour channels, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{source}: frames contain NaN or inf values")
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(f"{source}: float frames must lie in [0, 1], got "
                             f"[{arr.min():.3g}, {arr.max():.3g}]")
        arr = np.round(arr * 255)
    elif arr.dtype != np.uint8:
        raise ImageError(f"{source}: frames must be uint8 or float in [0, 1], got {arr.dtype}")
    if min(arr.shape[1:3]) < min_side:
        raise ImageError(f"{source}: frames are {arr.shape[2]}x{arr.shape[1]} pixels; at least "
                         f"{min_side} px per side is needed")
    frames = [Image.fromarray(arr[i].astype(np.uint8), "RGB")
              for i in _sample(arr.shape[0], num_frames)]
    return torch.stack([preprocess(f, spec) for f in frames])


def pad_videos(videos: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack frame stacks of different lengths: (B, F_max, 3, H, W) zero-padded, and lengths."""
    if not videos:
        raise ValueError("pad_videos: no videos given")
    shape = videos[0].shape[1:]
    for i, v in enumerate(videos):
        if v.dim() != 4 or v.shape[1:] != shape:
            want = ", ".join(map(str, shape))
            raise ValueError(f"video {i}: expected frames of shape (F, {want}), "
                             f"got {tuple(v.shape)}")
    lengths = torch.tensor([v.shape[0] for v in videos])
    out = videos[0].new_zeros(len(videos), int(lengths.max()), *shape)
    for i, v in enumerate(videos):
        out[i, : v.shape[0]] = v
    return out, lengths


__all__ = ["ImageError", "ImageSpec", "load_image", "load_images", "load_video_frames",
           "open_image", "pad_videos", "preprocess", "spec_from_hf_processor"]
