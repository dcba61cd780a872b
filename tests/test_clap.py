"""CLAP encoders: transformers ClapModel (tiny random config, save/load round trip) and the
official laion_clap audio tower (HTSAT-tiny at real shape, random weights, official .pt
layout), frames, masks, pooled embeddings, presets and loud failures."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from mullm.config import EncoderConfig, from_dict, validate_encoder  # noqa: E402
from mullm.encoders import build_encoder  # noqa: E402
from mullm.encoders.clap import (  # noqa: E402
    HFClapEncoder,
    LaionClapEncoder,
    check_text_tokenizer,
    load_laion_clap_tokenizer,
)
from mullm.encoders.weights import load_weights_file  # noqa: E402
from mullm.errors import ConfigError, ModelLoadError  # noqa: E402
from mullm.testing import tiny_encoder_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 48000
# The tiny HTSAT of mullm.testing: 1 s windows at 48 kHz, 32 frames of width 32 each.
TINY = tiny_encoder_config("clap", ROOT)["options"]  # ROOT: unused but for MERT
TINY_AUDIO, TINY_FE = TINY["audio_config"], TINY["feature_extractor"]


def _wave(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(t.shape, generator=g)


def _batch(*waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = torch.tensor([w.shape[0] for w in waves])
    x = torch.zeros(len(waves), int(n.max()))
    for i, w in enumerate(waves):
        x[i, : w.shape[0]] = w
    return x, n


# --------------------------------------------------------------------- transformers ClapModel


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ClapModel + feature extractor saved like a hub checkpoint."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    text = dict(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, projection_dim=24, max_position_embeddings=80)
    model = ClapModel(ClapConfig(text_config=text, audio_config=TINY_AUDIO, projection_dim=24))
    out = tmp_path_factory.mktemp("clap") / "tiny-clap"
    model.eval().save_pretrained(out)
    ClapFeatureExtractor(**TINY_FE).save_pretrained(out)
    return out


def test_hf_clap_frames_masks_and_windows(hf_dir: Path) -> None:
    enc = build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir)))
    assert isinstance(enc, HFClapEncoder)
    assert (enc.sample_rate, enc.window, enc.frames_per_window) == (SR, SR, 32)
    assert (enc.hidden_size, enc.num_layers) == (32, 1)
    # 2.5 windows and a third of one: 32 + 32 + 16 frames, and ceil(16000 * 32 / 48000) = 11.
    x, n = _batch(_wave(2.5), _wave(1 / 3, seed=1))
    out = enc(x, n)
    assert out.hidden_states.shape == (2, 1, 80, 32)
    assert out.mask.sum(1).tolist() == [80, 11] == [enc.num_frames(int(k)) for k in n]
    assert torch.isfinite(out.hidden_states).all()
    assert out.hidden_states[1, 0, 11:].abs().sum() == 0  # masked frames are zeros
    # Batching never changes a clip's features.
    alone = enc(*_batch(_wave(1 / 3, seed=1)))
    torch.testing.assert_close(alone.hidden_states[0, 0, :11], out.hidden_states[1, 0, :11])


def test_hf_clap_pooled_matches_transformers(hf_dir: Path) -> None:
    from transformers import ClapFeatureExtractor, ClapModel

    enc = build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir)))
    ref = ClapModel.from_pretrained(hf_dir).eval()
    fe = ClapFeatureExtractor.from_pretrained(hf_dir)
    wave = _wave(0.7)
    feats = fe([wave.numpy()], sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        want = ref.get_audio_features(input_features=feats["input_features"])
    want = getattr(want, "pooler_output", want)
    got = enc.pooled(*_batch(wave))
    torch.testing.assert_close(got, F.normalize(want, dim=-1), atol=1e-5, rtol=1e-4)
    assert torch.allclose(got.norm(dim=-1), torch.ones(1))
    # The one-frame-per-window option gives the same vector as a "layer".
    pooled_enc = build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir),
                                             options={"output": "pooled"}))
    out = pooled_enc(*_batch(wave, _wave(2.2)))
    assert out.hidden_states.shape == (2, 1, 3, 24)
    assert out.mask.sum(1).tolist() == [1, 3]
    torch.testing.assert_close(out.hidden_states[0, 0, 0], got[0], atol=1e-5, rtol=1e-4)


def test_hf_clap_random_config_and_refusals(hf_dir: Path) -> None:
    enc = build_encoder(EncoderConfig(name="clap", options=TINY))
    assert enc(*_batch(_wave(0.5))).hidden_states.shape == (1, 1, 16, 32)
    with pytest.raises(ConfigError, match="output"):
        build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir),
                                    options={"output": "mean"}))
    with pytest.raises(ConfigError, match="unknown keys"):
        build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir), options={"n_mels": 3}))
    with pytest.raises(ConfigError, match="sample_rate"):
        build_encoder(EncoderConfig(name="clap", checkpoint=str(hf_dir), sample_rate=16000))
    with pytest.raises(ModelLoadError, match="weights not found.*no network"):
        build_encoder(EncoderConfig(name="clap", checkpoint="laion/larger_clap_music"))
    with pytest.raises(ValueError, match="audio batch"):
        enc(torch.zeros(1, 2, 100), torch.tensor([100]))


# ----------------------------------------------------------------------- official laion_clap


@pytest.fixture(scope="module")
def laion() -> LaionClapEncoder:
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(name="laion_clap", options={"random_init": True}))
    # Random BatchNorm statistics would be all zeros/ones: give them values so that the
    # round trip below really checks that buffers load too.
    enc.tower.audio_branch.bn0.running_mean.normal_()
    return enc


def _official_ckpt(enc: LaionClapEncoder, path: Path, **extra: object) -> Path:
    """Write the tower in the official layout: DDP 'module.' keys, text weights, epoch."""
    state = {f"module.{k}": v.clone() for k, v in enc.tower.state_dict().items()}
    state["module.text_branch.embeddings.word_embeddings.weight"] = torch.zeros(3, 4)
    state["module.logit_scale_a"] = torch.tensor(2.0)
    torch.save({"epoch": 15, "name": "test", "state_dict": state, **extra}, path)
    return path


def test_laion_frames_and_official_preprocessing(laion: LaionClapEncoder) -> None:
    assert (laion.sample_rate, laion.window, laion.frames_per_window) == (SR, 480000, 32)
    assert (laion.hidden_size, laion.frame_rate) == (768, 3.2)
    x, n = _batch(_wave(12.0), _wave(3.0, seed=1))
    out = laion(x, n)
    assert out.hidden_states.shape == (2, 1, 39, 768)  # 32 + ceil(2 s * 3.2); ceil(3 s * 3.2)
    assert out.mask.sum(1).tolist() == [39, 10]
    # Pooled = laion_clap's own data path: int16 round trip, repeatpad, HTSAT, projection.
    from laion_clap.training.data import float32_to_int16, get_audio_features, int16_to_float32

    wave = _wave(3.0, seed=1).numpy()
    audio = torch.from_numpy(int16_to_float32(float32_to_int16(wave))).float()
    feats = get_audio_features({}, audio, 480000, data_truncating="rand_trunc",
                               data_filling="repeatpad",
                               audio_cfg=dict(vars(laion.tower.audio_cfg)))
    with torch.no_grad():
        ref = laion.tower.audio_branch({"waveform": feats["waveform"][None]}, device="cpu")
        want = F.normalize(laion.tower.audio_projection(ref["embedding"]), dim=-1)
        frames = ref["fine_grained_embedding"][0, ::32]
    torch.testing.assert_close(laion.pooled(*_batch(_wave(3.0, seed=1))), want,
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.hidden_states[1, 0, :10], frames[:10], atol=1e-5, rtol=1e-4)


def test_laion_official_checkpoint_round_trip(laion: LaionClapEncoder, tmp_path: Path) -> None:
    ckpt = _official_ckpt(laion, tmp_path / "630k-audioset-best.pt")
    loaded = build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(ckpt)))
    for (k, a), b in zip(laion.tower.state_dict().items(), loaded.tower.state_dict().values()):
        assert torch.equal(a, b), k
    x, n = _batch(_wave(2.0))
    torch.testing.assert_close(loaded(x, n).hidden_states, laion(x, n).hidden_states)


def test_laion_refuses_bad_checkpoints(laion: LaionClapEncoder, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="weights not found.*630k-audioset-best.pt"):
        build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(tmp_path / "missing.pt")))
    with pytest.raises(ConfigError, match="checkpoint is required"):
        build_encoder(EncoderConfig(name="laion_clap"))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(empty)))
    # A checkpoint that pickles an arbitrary class is refused unless the user opts in.
    risky = _official_ckpt(laion, tmp_path / "risky.pt", args=argparse.Namespace(lr=1))
    with pytest.raises(ModelLoadError, match="allow_pickle"):
        build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(risky)))
    build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(risky),
                                options={"allow_pickle": True}))
    # Missing or wrong-size weights are errors, never silently skipped.
    state = {k: v for k, v in laion.tower.state_dict().items() if "layers.3" not in k}
    torch.save({"state_dict": state}, tmp_path / "partial.pt")
    with pytest.raises(ModelLoadError, match="missing keys"):
        build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(tmp_path / "partial.pt")))
    fusion = dict(laion.tower.state_dict())
    fusion["audio_branch.fusion_model.x"] = torch.zeros(1)
    torch.save({"state_dict": fusion}, tmp_path / "fusion.pt")
    with pytest.raises(ModelLoadError, match="fusion"):
        build_encoder(EncoderConfig(name="laion_clap", checkpoint=str(tmp_path / "fusion.pt")))


def test_broken_offline_tokenizer_is_detected() -> None:
    class Stub:
        def __len__(self) -> int:
            return 5

    with pytest.raises(ModelLoadError, match="5 tokens instead of 50265"):
        check_text_tokenizer(Stub())
    # Offline, transformers hands back the 5-token stub (or, if roberta-base is cached,
    # the real one): either way no broken tokenizer gets through.
    try:
        tok = load_laion_clap_tokenizer()
    except ModelLoadError as exc:
        assert "roberta-base" in str(exc)
    else:
        assert len(tok) >= 50265


def test_load_weights_file_reads_plain_state_dicts(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1, "lr": 0.1}, tmp_path / "a.pt")
    ckpt = load_weights_file(tmp_path / "a.pt")
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["state_dict"]["w"], torch.ones(2))


# ------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", ["clap-htsat-tiny", "clap-music"])
def test_clap_presets(preset: str, tmp_path: Path, laion: LaionClapEncoder) -> None:
    data = yaml.safe_load((ROOT / "configs/encoders" / f"{preset}.yaml").read_text())
    assert (ROOT / "configs/encoders" / f"{preset}.yaml").read_text().startswith("# ")
    cfg = from_dict(EncoderConfig, data)
    validate_encoder(cfg)
    assert cfg.name == "laion_clap"
    # The real file is absent here: a clear error before anything is built.
    cfg.checkpoint = str(tmp_path / Path(data["checkpoint"]).name)
    with pytest.raises(ModelLoadError, match="weights not found.*no network"):
        build_encoder(cfg)
    if preset == "clap-htsat-tiny":
        # The preset's declared sizes match the built tower (random weights).
        cfg.checkpoint = str(_official_ckpt(laion, tmp_path / "tiny.pt"))
        enc = build_encoder(cfg)
        assert (enc.hidden_size, enc.frame_rate, enc.sample_rate) == (768, 3.2, SR)
    else:
        assert np.isclose(cfg.frame_rate, 3.2) and cfg.hidden_size == 1024
