"""The spectral and tiny encoders against the Encoder contract: shapes, masks, padding
invariance, determinism, musically meaningful features, and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mullm.audio import pad_batch, synth_clip, synth_tone
from mullm.config import EncoderConfig
from mullm.encoders import ENCODERS, LayerSelector, build_encoder
from mullm.encoders.spectral import SpectralEncoder
from mullm.encoders.tiny import TinyAudioEncoder, TinyImageEncoder
from mullm.errors import ConfigError
from mullm.utils.music import pitch_class

AUDIO_ENCODERS = ["spectral", "tiny_audio"]


def _encoder(name: str, **kw) -> torch.nn.Module:
    return build_encoder(EncoderConfig(name=name, **kw))


def _batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    x, n = pad_batch(waves)
    return torch.from_numpy(x), torch.from_numpy(n)


def test_registry_builds_classes() -> None:
    assert isinstance(_encoder("spectral"), SpectralEncoder)
    assert isinstance(_encoder("tiny_audio"), TinyAudioEncoder)
    assert isinstance(_encoder("tiny_image"), TinyImageEncoder)
    assert "mert" in ENCODERS


@pytest.mark.parametrize("name", AUDIO_ENCODERS)
def test_shapes_and_masks(name: str) -> None:
    enc = _encoder(name)
    sr = enc.sample_rate
    lens = [sr, sr // 2 + 17, 1, 3 * sr + 5]
    waves = [synth_clip(duration_s=n / sr, sample_rate=sr, seed=i) if n > 1
             else np.array([0.1], np.float32) for i, n in enumerate(lens)]
    x, n = _batch(waves)
    out = enc(x, n)
    expect = [enc.num_frames(k) for k in lens]
    assert out.hidden_states.shape == (4, enc.num_layers, max(expect), enc.hidden_size)
    assert out.mask.dtype == torch.bool
    assert out.mask.sum(1).tolist() == expect
    assert expect[0] == round(enc.frame_rate)  # one second -> frame_rate frames
    assert torch.isfinite(out.hidden_states).all()
    # Frames past each clip are zero.
    assert (out.hidden_states.masked_select(~out.mask[:, None, :, None]) == 0).all()


@pytest.mark.parametrize("name", AUDIO_ENCODERS)
def test_padding_invariance(name: str) -> None:
    """A clip's features do not depend on its batch-mates nor on what fills the padding."""
    enc = _encoder(name)
    sr = enc.sample_rate
    a = synth_clip("D", duration_s=1.3, sample_rate=sr, seed=1)
    b = synth_clip("G", "minor", duration_s=2.7, sample_rate=sr, seed=2)
    alone = enc(torch.from_numpy(a)[None], torch.tensor([len(a)]))
    x, n = _batch([a, b])
    x[0, len(a):] = torch.randn(x.shape[1] - len(a))  # garbage in the padding
    both = enc(x, n)
    t = alone.mask.sum().item()
    torch.testing.assert_close(both.hidden_states[0, :, :t], alone.hidden_states[0],
                               atol=1e-4, rtol=1e-4)
    assert both.mask[0].sum().item() == t


@pytest.mark.parametrize("name", AUDIO_ENCODERS)
def test_deterministic_across_builds(name: str) -> None:
    wave = synth_clip(duration_s=1.0)
    x, n = torch.from_numpy(wave)[None], torch.tensor([len(wave)])
    h1 = _encoder(name)(x, n).hidden_states
    h2 = _encoder(name)(x, n).hidden_states
    assert torch.equal(h1, h2)


def test_tiny_seed_changes_weights_and_layers_configurable() -> None:
    wave = torch.from_numpy(synth_clip(duration_s=0.5))[None]
    n = torch.tensor([wave.shape[1]])
    a = _encoder("tiny_audio", options={"seed": 0})(wave, n).hidden_states
    b = _encoder("tiny_audio", options={"seed": 1})(wave, n).hidden_states
    assert not torch.allclose(a, b)
    enc = _encoder("tiny_audio", num_layers=5, hidden_size=16)
    out = enc(wave, n)
    assert out.hidden_states.shape[1:] == (5, 25, 16)
    assert not any(p.requires_grad for p in enc.parameters())


@pytest.mark.parametrize("name", AUDIO_ENCODERS)
@pytest.mark.parametrize("case", ["empty", "nan", "inf", "rank3", "rank1", "long_length"])
def test_bad_batches_name_the_sample(name: str, case: str) -> None:
    enc = _encoder(name)
    x = torch.from_numpy(synth_clip(duration_s=0.5))[None].repeat(3, 1)
    n = torch.tensor([x.shape[1]] * 3)
    if case == "empty":
        n[1] = 0
        match = "sample 1"
    elif case == "nan":
        x[2, 10] = float("nan")
        match = r"sample\(s\) \[2\].*NaN"
    elif case == "inf":
        x[0, 5] = float("inf")
        match = r"sample\(s\) \[0\]"
    elif case == "rank3":
        x = x[:, None]
        match = "batch, samples"
    elif case == "rank1":
        x = x[0]
        match = "batch, samples"
    else:
        n[2] = x.shape[1] + 1
        match = "sample 2"
    with pytest.raises(ValueError, match=match):
        enc(x, n)


def test_spectral_layout_and_options() -> None:
    enc = _encoder("spectral", options={"n_mels": 40})
    assert enc.hidden_size == 40 + 12 + 1 + len(enc.tempo_lags) + 26 and enc.num_layers == 1
    assert enc.num_frames(16000) == 25 and enc.num_frames(16001) == 26
    enc50 = _encoder("spectral", frame_rate=50.0, sample_rate=24000)
    assert enc50.num_frames(24000) == 50
    with pytest.raises(ConfigError, match="unknown spectral option"):
        _encoder("spectral", options={"n_mel": 40})
    with pytest.raises(ConfigError, match="whole number of samples"):
        _encoder("spectral", frame_rate=33.0)
    with pytest.raises(ConfigError, match="hidden_size"):
        _encoder("spectral", hidden_size=10)
    fp = enc.fingerprint()
    assert fp["options"]["n_mels"] == 40 and fp["frame_rate"] == 25.0


def _chroma(enc: SpectralEncoder, wave: np.ndarray) -> torch.Tensor:
    out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    return out.hidden_states[0, 0, :, enc.n_mels:enc.n_mels + 12]


@pytest.mark.parametrize("note", ["C", "E", "A", "Bb"])
def test_spectral_chroma_finds_pitch_class(note: str) -> None:
    enc = _encoder("spectral")
    freq = 440.0 * 2 ** ((pitch_class(note) - 9) / 12)  # octave of A4
    chroma = _chroma(enc, synth_tone(freq, 1.0))
    assert int(chroma[5:-5].mean(0).argmax()) == pitch_class(note)


def test_spectral_chroma_separates_keys() -> None:
    """Chord progressions in C and in F# major have their tonic triads on top."""
    enc = _encoder("spectral")
    for key in ("C", "F#"):
        profile = _chroma(enc, synth_clip(key, duration_s=4.0)).mean(0)
        top = set(profile.topk(3).indices.tolist())
        tonic = pitch_class(key)
        assert tonic in top, (key, profile)


def test_spectral_onsets_follow_tempo() -> None:
    """The onset channel peaks once per beat: its autocorrelation finds the beat period."""
    enc = _encoder("spectral")
    for bpm in (75.0, 150.0):
        wave = synth_clip(tempo_bpm=bpm, duration_s=8.0, timbre="square")
        out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        onset = out.hidden_states[0, 0, :, enc.n_mels + 12].numpy()
        onset = onset - onset.mean()
        ac = np.correlate(onset, onset, "full")[len(onset) - 1:]
        lo, hi = int(25 * 60 / 200), int(25 * 60 / 60)  # lags for 60-200 bpm
        lag = lo + int(np.argmax(ac[lo:hi + 1]))
        period = 60.0 / bpm * 25
        # The beat period or a multiple of it (a bar of two beats is also periodic).
        ratio = lag / period
        assert abs(ratio - round(ratio)) < 0.15 and round(ratio) >= 1, (bpm, lag, period)


def test_spectral_timbre_shows_in_mel() -> None:
    enc = _encoder("spectral")
    sine = synth_clip(timbre="sine", duration_s=2.0)
    saw = synth_clip(timbre="saw", duration_s=2.0)
    mels = []
    for w in (sine, saw):
        out = enc(torch.from_numpy(w)[None], torch.tensor([len(w)]))
        mels.append(out.hidden_states[0, 0, :, :enc.n_mels].mean(0))
    # Harmonics put energy in the mid bands (~0.5-2 kHz) where a sine has none.
    hi = slice(enc.n_mels // 8, enc.n_mels // 2)
    assert mels[1][hi].mean() > mels[0][hi].mean() + 0.5


def test_spectral_scale_is_fixed_not_per_batch() -> None:
    """A quiet clip stays quiet: features use fixed constants, not batch statistics."""
    enc = _encoder("spectral")
    loud = synth_clip(amplitude=0.8, duration_s=1.0)
    quiet = synth_clip(amplitude=0.01, duration_s=1.0)
    x, n = _batch([loud, quiet])
    h = enc(x, n).hidden_states[:, 0, :, :enc.n_mels].mean((1, 2))
    assert h[0] > h[1] + 1.0
    alone = enc(torch.from_numpy(quiet)[None], n[1:]).hidden_states[0, 0, :, :enc.n_mels]
    torch.testing.assert_close(alone.mean(), h[1], atol=1e-5, rtol=1e-5)


def test_layer_selector_on_tiny_audio() -> None:
    enc = _encoder("tiny_audio", num_layers=4)
    wave = torch.from_numpy(synth_clip(duration_s=0.5))[None]
    out = enc(wave, torch.tensor([wave.shape[1]]))
    sel = LayerSelector("all", "weighted", enc.num_layers)
    y = sel(out.hidden_states)
    torch.testing.assert_close(y, out.hidden_states.mean(1))  # zero weights = mean
    assert LayerSelector(-1, "mean", enc.num_layers)(out.hidden_states).shape == y.shape


def test_tiny_image_shapes_and_determinism() -> None:
    enc = _encoder("tiny_image")
    assert enc.modality == "image" and enc.num_patches == 16 and enc.frame_rate == 16.0
    imgs = torch.rand(2, 3, 32, 32)
    out = enc(imgs, torch.ones(2, dtype=torch.long))
    assert out.hidden_states.shape == (2, 3, 16, 32)
    assert out.mask.all()
    assert enc.num_frames(1) == 16
    again = _encoder("tiny_image")(imgs, torch.ones(2, dtype=torch.long))
    assert torch.equal(out.hidden_states, again.hidden_states)
    # Other sizes are resized to image_size; the patch count does not change.
    big = enc(torch.rand(1, 3, 48, 40), torch.ones(1, dtype=torch.long))
    assert big.hidden_states.shape == (1, 3, 16, 32)
    # Each image is encoded independently of its batch-mates.
    torch.testing.assert_close(enc(imgs[1:], torch.ones(1, dtype=torch.long)).hidden_states,
                               out.hidden_states[1:], atol=1e-5, rtol=1e-5)


def test_tiny_image_video_and_bad_inputs() -> None:
    enc = _encoder("tiny_image", options={"image_size": 16, "patch_size": 8})
    vids = torch.rand(2, 3, 3, 16, 16)
    out = enc(vids, torch.tensor([3, 1]))
    assert out.hidden_states.shape == (2, 3, 12, 32)
    assert out.mask.sum(1).tolist() == [12, 4]
    with pytest.raises(ValueError, match="sample"):
        enc(torch.rand(2, 3, 16, 16), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        enc(torch.rand(2, 3, 16, 16), torch.tensor([1, 2]))
    bad = torch.rand(2, 3, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"sample\(s\) \[0\]"):
        enc(bad, torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, C, H, W"):
        enc(torch.rand(3, 16, 16), torch.ones(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="multiple of"):
        _encoder("tiny_image", options={"image_size": 20, "patch_size": 8})


def test_spectral_tempogram_finds_the_beat() -> None:
    """The tempogram group peaks at the beat period (or a multiple of it)."""
    enc = _encoder("spectral")
    start = enc.n_mels + 13
    for bpm in (75.0, 150.0):
        wave = synth_clip(tempo_bpm=bpm, duration_s=8.0, timbre="square")
        out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        tg = out.hidden_states[0, 0, :, start:start + len(enc.tempo_lags)].mean(0)
        lag = enc.tempo_lags[int(tg.argmax())]
        ratio = lag / (60.0 / bpm * 25)
        assert abs(ratio - round(ratio)) < 0.15 and round(ratio) >= 1, (bpm, lag)


@pytest.mark.parametrize("key,mode", [("C", "major"), ("F#", "minor"), ("Bb", "major")])
def test_spectral_key_profiles_find_the_key(key: str, mode: str) -> None:
    """The key-profile group's strongest of 24 keys is the clip's key, and the mode-strength
    pair (best major, best minor) leans the clip's way."""
    enc = _encoder("spectral")
    wave = synth_clip(key=key, mode=mode, duration_s=8.0)
    out = enc(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    frames = out.hidden_states[0, 0]
    keys = frames[:, -26:-2].mean(0)
    best = int(keys.argmax())
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    assert (names[best % 12], "major" if best < 12 else "minor") == (key, mode)
    major, minor = frames[:, -2].mean(), frames[:, -1].mean()
    assert (major > minor) == (mode == "major"), (float(major), float(minor))
    assert torch.equal(frames[:, -2], frames[:, -26:-14].amax(1))


def test_spectral_filterbanks_come_from_librosa_unchanged_mel() -> None:
    """The mel filterbank (now librosa's) equals the HTK triangles mullm computed by hand
    before; the chroma filterbank (librosa's since fingerprint version 3) splits each bin in
    the chroma band over pitch classes summing to 1, centred where the bin's pitch is."""
    from mullm.encoders.spectral import chroma_filterbank, mel_filterbank

    sr, n_fft, n_mels = 16000, 2048, 64
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # the old hand-written reference
    edges = 700.0 * (10.0 ** (np.linspace(mel(0.0), mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    old = np.stack([np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo),
                                               (hi - freqs) / (hi - mid)))
                    for lo, mid, hi in zip(edges, edges[1:], edges[2:])])
    np.testing.assert_allclose(mel_filterbank(sr, n_fft, n_mels, 0.0, sr / 2), old, atol=1e-6)

    chroma = chroma_filterbank(sr, n_fft, 100.0, 5000.0)
    assert chroma.shape == (12, n_fft // 2 + 1) and chroma.dtype == np.float32
    band = (freqs >= 100.0) & (freqs <= 5000.0)
    np.testing.assert_allclose(chroma[:, band].sum(0), 1.0, atol=1e-5)
    assert not chroma[:, ~band].any()
    for hz, pc in ((440.0, 9), (261.6, 0), (1568.0, 7)):  # A4, C4, G6
        assert int(chroma[:, int(np.argmin(np.abs(freqs - hz)))].argmax()) == pc
    assert _encoder("spectral").fingerprint()["version"] == 3


def test_encoders_stay_in_eval_mode_inside_a_training_model(tiny_llm_dir) -> None:
    """model.train() must not put a frozen encoder in train mode: HuBERT's layer drop then
    skips layers at random (MERT returned no hidden states) and dropout changes features."""
    from conftest import tiny_model_dict

    from mullm.config import load_model_config
    from mullm.model import MusicLLM

    model = MusicLLM(load_model_config(tiny_model_dict(tiny_llm_dir, "mlp", "splice")))
    model.train()
    assert model.adapters.training and not model.encoders["audio"].training
    assert not any(m.training for m in model.encoders["audio"].modules())
