"""The Basic Pitch encoder equals the basic-pitch package's own inference on a rendered clip,
counts its frames as the package does, does not depend on its batch, and joins the spectral
features on their grid through the concat encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mullm.audio import load_audio
from mullm.commands.extract import encoder_config_from_file
from mullm.encoders import build_encoder
from mullm.encoders.concat import align_frames
from mullm.encoders.frames import count_frames


def _encoder(name: str) -> torch.nn.Module:
    return build_encoder(encoder_config_from_file(f"encoders/{name}"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from mullm.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("bp")
    meta = build_corpus(out, 2, seed=3, workers=1, min_s=3.0, max_s=5.0, music21_fraction=0.0,
                        progress=False)
    return sorted((meta.parent / "audio").glob("*.wav"))


def test_matches_the_package_inference_on_a_rendered_clip(clips: list[Path]) -> None:
    import basic_pitch.inference as bpi

    enc = _encoder("basic-pitch")
    ref = bpi.run_inference(clips[0], bpi.Model(enc.model_path))
    expected = np.concatenate([ref["note"], ref["onset"], ref["contour"]], -1)
    wave = torch.from_numpy(load_audio(clips[0], 22050))
    out = enc(wave[None], torch.tensor([wave.shape[0]]))
    assert out.hidden_states.shape == (1, 1, expected.shape[0], 440)
    assert expected.shape[0] == enc.num_frames(wave.shape[0])  # the clip spans 3+ windows
    np.testing.assert_allclose(out.hidden_states[0, 0].numpy(), expected, atol=1e-5)
    assert float(out.hidden_states.max()) > 0.5  # real notes were found, not silence


def test_batch_does_not_change_a_clip_and_frames_are_counted_exactly(clips: list[Path]) -> None:
    enc = _encoder("basic-pitch")
    waves = [torch.from_numpy(load_audio(p, 22050)) for p in clips]
    waves.append(waves[0][:5000])  # shorter than one window
    lengths = torch.tensor([w.shape[0] for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : w.shape[0]] = w
    batch[2, 5000:] = 1.0  # garbage in the padding must not leak into the short clip
    out = enc(batch, lengths)
    for i, w in enumerate(waves):
        alone = enc(w[None], torch.tensor([w.shape[0]]))
        n = enc.num_frames(w.shape[0])
        assert int(out.mask[i].sum()) == n == alone.hidden_states.shape[2]
        torch.testing.assert_close(out.hidden_states[i, :, :n], alone.hidden_states[0])


def test_rate_floor_frame_rule() -> None:
    spec = {"rule": "rate_floor", "frame_rate": 86.0, "sample_rate": 22050.0}
    assert [count_frames(spec, n) for n in (1, 256, 257, 22050, 11025 * 3)] == [1, 1, 1, 86, 129]


def test_align_frames_averages_each_grid_span() -> None:
    # 4 source frames per grid frame; a clip of 10 source frames -> 3 grid frames, the last
    # one holding only frames 8 and 9.
    src = torch.arange(12, dtype=torch.float32).reshape(1, 12, 1).repeat(2, 1, 1)
    out = align_frames(src, torch.tensor([10, 2]), 100.0, torch.tensor([3, 2]), 25.0, 3)
    assert out[0, :, 0].tolist() == [1.5, 5.5, 8.5]
    # A source shorter than the grid repeats its last frame; past the grid's frames: zero.
    assert out[1, :, 0].tolist() == [0.5, 1.0, 0.0]


def test_concat_joins_spectral_and_basic_pitch_on_the_spectral_grid(clips: list[Path]) -> None:
    both = _encoder("spectral-basic-pitch")
    wave = torch.from_numpy(load_audio(clips[1], 22050))
    n = torch.tensor([wave.shape[0]])
    out = both(wave[None], n)
    spec = both.parts["spectral"](wave[None], n)
    bp = both.parts["basic_pitch"](wave[None], n)
    t = both.num_frames(wave.shape[0])
    assert out.hidden_states.shape == (1, 1, t, 136 + 440) and int(out.mask.sum()) == t
    torch.testing.assert_close(out.hidden_states[0, 0, :, :136], spec.hidden_states[0, 0])
    # grid frame 10 (0.40-0.44 s) averages Basic Pitch frames 35-37 (86 per second)
    torch.testing.assert_close(out.hidden_states[0, 0, 10, 136:],
                               bp.hidden_states[0, 0, 35:38].mean(0))
