"""Image/video input (mullm.image) and the vision encoders (CLIP via transformers and
open_clip, ViT, ViViT) on tiny random configs; presets fail loudly without weights."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from mullm.config import EncoderConfig, from_dict, validate_encoder  # noqa: E402
from mullm.encoders import build_encoder  # noqa: E402
from mullm.errors import AudioError, ConfigError, ModelLoadError  # noqa: E402
from mullm.image import (  # noqa: E402
    ImageError,
    ImageSpec,
    load_image,
    load_video_frames,
    open_image,
    pad_videos,
    spec_from_hf_processor,
)
from mullm.testing import tiny_encoder_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tiny(name: str) -> EncoderConfig:
    """The tiny random config of vision family ``name`` (mullm.testing): 32 x 32 images in
    8 x 8 patches (16 patches + CLS = 17 tokens), width 32, 2 layers; ViViT adds 4 frames in
    tubelets of 2."""
    return EncoderConfig(**tiny_encoder_config(name, ROOT))  # ROOT: unused but for MERT


def _png(path: Path, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode).save(path)
    return path


# --------------------------------------------------------------------------- mullm.image


def test_images_decode_validate_and_match_hf(tmp_path: Path) -> None:
    from transformers import CLIPImageProcessor, ViTImageProcessor

    img = _png(tmp_path / "a.png")
    for proc in (CLIPImageProcessor(), ViTImageProcessor()):
        spec = spec_from_hf_processor(proc)
        ours = load_image(img, spec)
        theirs = proc(Image.open(img).convert("RGB"), return_tensors="pt")["pixel_values"][0]
        assert ours.shape == theirs.shape == (3, 224, 224)
        assert (ours - theirs).abs().mean() < 0.02  # same PIL resize; rounding differs
    gray = load_image(_png(tmp_path / "g.png", mode="L"), ImageSpec())
    assert gray.shape == (3, 224, 224) and torch.allclose(gray[0] * 0.2686 + 0.4815,
                                                          gray[1] * 0.2613 + 0.4578, atol=1e-3)
    # Transparent pixels become white, not black.
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert np.asarray(open_image(tmp_path / "t.png")).min() == 255


def test_bad_images_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    _png(tmp_path / "tiny.png", size=(8, 8))
    good = _png(tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    for name, why in [("empty.jpg", "empty"), ("text.jpg", "not a readable image"),
                      ("tiny.png", "8x8 pixels"), ("cut.png", "not a readable image"),
                      ("missing.png", "not found")]:
        with pytest.raises(ImageError, match=why) as info:
            open_image(tmp_path / name)
        assert name in str(info.value)
        assert isinstance(info.value, AudioError)  # one family of input errors


def test_video_frames_from_folder_and_npy(tmp_path: Path) -> None:
    spec = ImageSpec(size=32, crop=(32, 32))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        _png(frames / f"{i:03d}.png")
    assert load_video_frames(frames, spec).shape == (5, 3, 32, 32)
    assert load_video_frames(frames, spec, num_frames=8).shape == (8, 3, 32, 32)
    arr = np.random.default_rng(0).integers(0, 255, (6, 40, 40, 3), dtype=np.uint8)
    np.save(tmp_path / "v.npy", arr)
    np.save(tmp_path / "vf.npy", (arr / 255.0).transpose(0, 3, 1, 2).astype(np.float32))
    a = load_video_frames(tmp_path / "v.npy", spec, num_frames=3)
    b = load_video_frames(tmp_path / "vf.npy", spec, num_frames=3)
    assert a.shape == (3, 3, 32, 32) and torch.allclose(a, b, atol=1e-5)
    np.save(tmp_path / "bad.npy", np.zeros((4, 40, 40), np.uint8))
    np.save(tmp_path / "range.npy", np.full((2, 40, 40, 3), 3.0, np.float32))
    (tmp_path / "empty_dir").mkdir()
    for name, why in [("bad.npy", "shape"), ("range.npy", r"\[0, 1\]"),
                      ("empty_dir", "no frame images"), ("x.mp4", "expected a folder")]:
        with pytest.raises(ImageError, match=why):
            load_video_frames(tmp_path / name, spec)
    x, n = pad_videos([a, a[:2]])
    assert x.shape == (2, 3, 3, 32, 32) and n.tolist() == [3, 2]


# ------------------------------------------------------------------------------ encoders


def test_clip_and_vit_tokens_and_layers(tmp_path: Path) -> None:
    clip, vit = build_encoder(_tiny("clip")), build_encoder(_tiny("vit"))
    img = _png(tmp_path / "a.png")
    for enc in (clip, vit):
        assert (enc.modality, enc.sample_rate, enc.num_frames(1)) == ("image", 1, 17)
        x, n = enc.load([img, img])
        out = enc(x, n)
        assert out.hidden_states.shape == (2, 3, 17, 32) and out.mask.all()
        torch.testing.assert_close(out.hidden_states[0], out.hidden_states[1])
        with pytest.raises(ValueError, match="lengths must all be 1"):
            enc(x, torch.tensor([1, 2]))
        with pytest.raises(ValueError, match=r"shape \(3, 32, 32\)"):
            enc(torch.zeros(1, 3, 64, 64), torch.ones(1, dtype=torch.long))
    # A saved checkpoint folder reloads to the same features (the real loading path).
    from transformers import ViTImageProcessor

    vit.model.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    again = build_encoder(EncoderConfig(name="vit", checkpoint=str(tmp_path / "vit")))
    x, n = vit.load([img])
    torch.testing.assert_close(again(x, n).hidden_states, vit(x, n).hidden_states)


def test_vivit_video_contract() -> None:
    enc = build_encoder(_tiny("vivit"))
    assert (enc.modality, enc.sample_rate, enc.num_frames(4)) == ("video", 4, 33)
    out = enc(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 4]))
    assert out.hidden_states.shape == (2, 3, 33, 32) and out.mask.sum(1).tolist() == [33, 33]
    with pytest.raises(ValueError, match="exactly 4 real frames"):
        enc(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 2]))
    with pytest.raises(ValueError, match="num_frames=4"):
        enc(torch.randn(1, 6, 3, 32, 32), torch.tensor([6]))


def test_open_clip_tokens(tmp_path: Path) -> None:
    enc = build_encoder(_tiny("open_clip"))  # ViT-B-32 with 2 layers of width 64
    assert enc.num_frames(1) == 17 and enc.image_spec.out_size == (32, 32)
    out = enc(*enc.load([_png(tmp_path / "a.png")]))
    assert out.hidden_states.shape == (1, 2, 17, 64)
    # The last block's tokens are what open_clip's own forward pools (CLS after ln_post).
    with torch.no_grad():
        pooled = enc.visual.ln_post(out.hidden_states[:, -1, 0]) @ enc.visual.proj
        want = enc.visual(enc.load([tmp_path / "a.png"])[0])
    torch.testing.assert_close(pooled, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelLoadError, match="weights not found"):
        build_encoder(EncoderConfig(name="open_clip", options={"pretrained": "openai"}))


# ------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset,name,tokens", [("clip-vit-b32", "clip", 50),
                                                ("vit-b16", "vit", 197),
                                                ("vivit-b16x2", "vivit", 3137)])
def test_vision_presets(preset: str, name: str, tokens: int) -> None:
    path = ROOT / "configs/encoders" / f"{preset}.yaml"
    assert path.read_text().startswith("# ")
    cfg = from_dict(EncoderConfig, yaml.safe_load(path.read_text()))
    validate_encoder(cfg)
    assert cfg.name == name and cfg.frame_rate == tokens
    with pytest.raises(ModelLoadError, match="weights not found.*no network"):
        build_encoder(cfg)  # offline: a clear error at once, no hanging download
    # The preset's declared sizes are checked against what gets built.
    cfg.options = _tiny(name).options
    with pytest.raises(ConfigError, match="(hidden_size=768|sample_rate=32) but"):
        build_encoder(cfg)
