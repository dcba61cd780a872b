"""MERT via HubertModel, on locally written MERT-style checkpoints with random weights.

The folders carry MERT's own config.json fields (model_type mert_model, auto_map,
feature_extractor_cqt, deepnorm, attention_relax, ...) and conv geometry (320-sample stride:
24 kHz in, 75 Hz out), saved as model.safetensors and as a legacy pytorch_model.bin with
weight_g / weight_v position-conv keys, as the hub's MERT-v1 repos have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mullm.audio import synth_clip
from mullm.config import EncoderConfig
from mullm.encoders import build_encoder
from mullm.encoders.mert import MERTEncoder, conv_output_length, receptive_field
from mullm.errors import ConfigError, ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SR = 24000


def mert_config(norm: str = "group", **extra: object) -> dict:
    """MERT-v1's config.json fields with tiny sizes (95M uses group norm, 330M layer)."""
    cfg = {
        "_name_or_path": "m-a-p/MERT-v1-95M", "activation_dropout": 0.1,
        "apply_spec_augment": True, "architectures": ["MERTModel"], "attention_dropout": 0.1,
        "attention_relax": -1.0,
        "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig",
                     "AutoModel": "modeling_MERT.MERTModel"},
        "bos_token_id": 1, "classifier_proj_size": 256, "conv_bias": norm == "layer",
        "conv_dim": [16] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2], "ctc_loss_reduction": "sum",
        "ctc_zero_infinity": False, "deepnorm": False,
        "do_stable_layer_norm": norm == "layer", "eos_token_id": 2,
        "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0,
        "feat_extract_norm": norm, "feat_proj_dropout": 0.1, "feat_proj_layer_norm": True,
        "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336,
        "final_dropout": 0.1, "hidden_act": "gelu", "hidden_dropout": 0.1,
        "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-05, "layerdrop": 0.1, "mask_feature_length": 10,
        "mask_feature_min_masks": 0, "mask_feature_prob": 0.0, "mask_time_length": 10,
        "mask_time_min_masks": 2, "mask_time_prob": 0.05, "model_type": "mert_model",
        "num_attention_heads": 2, "num_conv_pos_embedding_groups": 4,
        "num_conv_pos_embeddings": 16, "num_feat_extract_layers": 7, "num_hidden_layers": 2,
        "pad_token_id": 0, "sample_rate": SR, "tokenizer_class": "Wav2Vec2CTCTokenizer",
        "torch_dtype": "float32", "transformers_version": "4.25.1",
        "use_weighted_layer_sum": False, "vocab_size": 32,
    }
    cfg.update(extra)
    return cfg


PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                "feature_size": 1, "padding_side": "right", "padding_value": 0,
                "return_attention_mask": True, "sampling_rate": SR}


def _state_dict(cfg: dict) -> dict[str, torch.Tensor]:
    from transformers import HubertModel

    from mullm.encoders.mert import hubert_config_from_mert

    torch.manual_seed(0)
    return HubertModel(hubert_config_from_mert(cfg)).state_dict()


def write_checkpoint(folder: Path, cfg: dict, *, legacy: bool = False,
                     edit: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A MERT-style folder: config.json, preprocessor_config.json and weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    sd = _state_dict({**cfg, "feature_extractor_cqt": False, "deepnorm": False})
    if legacy:
        sd = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v
              for k, v in sd.items()}
    sd.update(edit or {})
    for k in drop:
        sd.pop(k)
    sd = {k: v.contiguous() for k, v in sd.items()}
    if legacy:
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("mert") / "MERT-v1-tiny", mert_config())


def _enc(path: Path, **kw: object) -> MERTEncoder:
    return build_encoder(EncoderConfig(name="mert", checkpoint=str(path), **kw))


def test_loads_as_hubert_with_mert_rates(ckpt: Path) -> None:
    enc = _enc(ckpt)
    assert isinstance(enc, MERTEncoder)
    assert enc.sample_rate == 24000 and enc.frame_rate == 75.0
    assert enc.num_layers == 3 and enc.hidden_size == 32
    assert type(enc.model).__name__ == "HubertModel"
    wave = synth_clip(duration_s=10.0, sample_rate=SR)
    out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    # 10 s at 24 kHz -> 749 frames (75 Hz less the 400-sample receptive field).
    assert out.hidden_states.shape == (1, 3, 749, 32)
    assert enc.num_frames(SR * 10) == 749 == conv_output_length(SR * 10, enc.kernels,
                                                                enc.strides)
    assert receptive_field(enc.kernels, enc.strides) == 400


def test_matches_feature_extractor_plus_hubert(ckpt: Path) -> None:
    """Our normalisation + HubertModel equals transformers' own pipeline."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    enc = _enc(ckpt)
    wave = synth_clip(duration_s=1.5, sample_rate=SR, amplitude=0.7)
    fe = Wav2Vec2FeatureExtractor.from_pretrained(str(ckpt))
    inputs = fe(wave, sampling_rate=SR, return_tensors="pt")
    model = HubertModel.from_pretrained(str(ckpt), config=enc.model.config).eval()
    with torch.no_grad():
        ref = model(inputs["input_values"], output_hidden_states=True).hidden_states
    out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    torch.testing.assert_close(out.hidden_states[0], torch.stack(ref, 1)[0],
                               atol=1e-4, rtol=1e-4)


def test_legacy_weight_g_v_bin_loads_identically(ckpt: Path, tmp_path: Path) -> None:
    legacy = write_checkpoint(tmp_path / "legacy", mert_config(), legacy=True)
    assert (legacy / "pytorch_model.bin").is_file()
    keys = torch.load(legacy / "pytorch_model.bin", weights_only=True).keys()
    assert any(k.endswith("weight_g") for k in keys)
    a, b = _enc(ckpt), _enc(legacy)
    wave = torch.from_numpy(synth_clip(duration_s=1.0, sample_rate=SR))[None]
    n = torch.tensor([wave.shape[1]])
    torch.testing.assert_close(a(wave, n).hidden_states, b(wave, n).hidden_states)
    assert a.fingerprint()["weights_sha256"] == b.fingerprint()["weights_sha256"]


def test_strict_loading_lists_missing_and_unexpected(tmp_path: Path) -> None:
    bad = write_checkpoint(tmp_path / "bad", mert_config(),
                           edit={"extra_head.weight": torch.zeros(2)},
                           drop=("encoder.layer_norm.bias",))
    with pytest.raises(ModelLoadError) as exc:
        _enc(bad)
    msg = str(exc.value)
    assert "missing keys: encoder.layer_norm.bias" in msg
    assert "unexpected keys: extra_head.weight" in msg
    assert str(bad) in msg


def test_refuses_cqt_deepnorm_and_wrong_settings(tmp_path: Path) -> None:
    for key in ("feature_extractor_cqt", "deepnorm"):
        folder = write_checkpoint(tmp_path / key, mert_config(**{key: True}))
        with pytest.raises(ModelLoadError, match=f"{key}=true"):
            _enc(folder)
    ok = write_checkpoint(tmp_path / "ok", mert_config())
    with pytest.raises(ConfigError, match="checkpoint expects 24000"):
        _enc(ok, sample_rate=16000)
    with pytest.raises(ConfigError, match="checkpoint is required"):
        build_encoder(EncoderConfig(name="mert"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        _enc(tmp_path)


def test_group_norm_checkpoint_is_padding_invariant(ckpt: Path) -> None:
    """95M-style (GroupNorm) clips are encoded at their own length: batch-mates and
    padding do not change them."""
    enc = _enc(ckpt)
    assert enc.per_clip
    a = synth_clip("D", duration_s=0.8, sample_rate=SR, seed=1)
    b = synth_clip("A", duration_s=1.7, sample_rate=SR, seed=2)
    x = torch.zeros(2, len(b))
    x[0, :len(a)] = torch.from_numpy(a)
    x[0, len(a):] = 0.5  # garbage padding
    x[1] = torch.from_numpy(b)
    both = enc(x, torch.tensor([len(a), len(b)]))
    alone = enc(torch.from_numpy(a)[None], torch.tensor([len(a)]))
    t = enc.num_frames(len(a))
    torch.testing.assert_close(both.hidden_states[0, :, :t], alone.hidden_states[0],
                               atol=1e-5, rtol=1e-5)
    assert both.mask.sum(1).tolist() == [t, enc.num_frames(len(b))]


def test_layer_norm_checkpoint_batches_with_attention_mask(tmp_path: Path) -> None:
    """330M-style (stable layer norm) checkpoints batch mixed lengths with a mask."""
    enc = _enc(write_checkpoint(tmp_path / "ln", mert_config("layer")))
    assert not enc.per_clip
    a = synth_clip(duration_s=0.6, sample_rate=SR, seed=3)
    b = synth_clip(duration_s=1.2, sample_rate=SR, seed=4)
    x = torch.zeros(2, len(b))
    x[0, :len(a)] = torch.from_numpy(a)
    x[1] = torch.from_numpy(b)
    both = enc(x, torch.tensor([len(a), len(b)]))
    alone = enc(torch.from_numpy(a)[None], torch.tensor([len(a)]))
    t = enc.num_frames(len(a))
    torch.testing.assert_close(both.hidden_states[0, :, :t], alone.hidden_states[0],
                               atol=1e-4, rtol=1e-4)
    # Padding batches to whole seconds (fewer shapes for torch.compile) changes nothing,
    # and a clip shorter than one receptive field batches like it encodes alone.
    padded = _enc(tmp_path / "ln", options={"pad_multiple_s": 1.0})
    tiny = np.full(200, 0.2, np.float32)
    x2 = torch.zeros(3, len(b))
    x2[:2] = x
    x2[2, :200] = torch.from_numpy(tiny)
    out = padded(x2, torch.tensor([len(a), len(b), 200]))
    torch.testing.assert_close(out.hidden_states[:2], both.hidden_states, atol=1e-4,
                               rtol=1e-4)
    short = enc(torch.from_numpy(tiny)[None], torch.tensor([200]))
    torch.testing.assert_close(out.hidden_states[2, :, :1], short.hidden_states[0],
                               atol=1e-4, rtol=1e-4)


def test_long_input_is_windowed_and_concatenated(ckpt: Path) -> None:
    enc = _enc(ckpt, window_s=1.0)
    wave = synth_clip(duration_s=2.5, sample_rate=SR)
    out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    expect = 2 * conv_output_length(SR, enc.kernels, enc.strides) + \
        conv_output_length(SR // 2, enc.kernels, enc.strides)
    assert out.mask.sum().item() == expect == enc.num_frames(len(wave))
    # The second window's frames are exactly that second encoded on its own.
    w2 = torch.from_numpy(wave[SR:2 * SR])[None]
    ref = enc(w2, torch.tensor([SR])).hidden_states[0]
    t1 = conv_output_length(SR, enc.kernels, enc.strides)
    torch.testing.assert_close(out.hidden_states[0, :, t1:2 * t1], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="must\nnot overlap|not overlap"):
        _enc(ckpt, window_s=1.0, hop_s=0.5)


def test_short_clip_padded_to_one_frame(ckpt: Path) -> None:
    enc = _enc(ckpt)
    wave = np.full(100, 0.1, np.float32)  # shorter than the 400-sample receptive field
    out = enc(torch.from_numpy(wave)[None], torch.tensor([100]))
    assert out.mask.sum().item() == 1 == enc.num_frames(100)


def test_bfloat16_dtype(ckpt: Path) -> None:
    enc = _enc(ckpt, dtype="bfloat16")
    wave = torch.from_numpy(synth_clip(duration_s=0.5, sample_rate=SR))[None]
    out = enc(wave, torch.tensor([wave.shape[1]]))
    assert out.hidden_states.dtype == torch.bfloat16
    assert enc.fingerprint()["dtype"] == "bfloat16"
