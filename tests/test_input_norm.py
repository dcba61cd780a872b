"""Adapter input standardisation: exact statistics, identity until fitted, padding untouched,
fitted by the trainer on training clips before the first step, saved, reloaded and never
refitted on resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mullm.adapters import build_adapter
from mullm.adapters.input_norm import InputStandardizer
from mullm.config import AdapterConfig
from mullm.model import MusicLLM
from mullm.testing import make_tiny_llm
from mullm.train import Trainer, load_train_config
from mullm.train.toydata import tiny_train_config


def test_fit_gives_each_dimension_zero_mean_unit_std() -> None:
    x = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([0.1, 2.0, 5.0]) + \
        torch.tensor([1.0, -3.0, 0.0])
    norm = InputStandardizer(3)
    assert not norm.fitted
    assert torch.equal(norm(x.float()), x.float())  # unfitted: the identity
    norm.fit(x.sum(0), x.pow(2).sum(0), x.shape[0])
    y = norm(x.float()).double()
    assert norm.fitted
    assert torch.allclose(y.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_constant_dimension_is_not_blown_up() -> None:
    x = torch.randn(200, 4, dtype=torch.float64)
    x[:, 2] = 0.5  # constant on the training frames
    norm = InputStandardizer(4)
    norm.fit(x.sum(0), x.pow(2).sum(0), x.shape[0])
    probe = torch.zeros(1, 4)
    probe[0, 2] = 1.5
    assert float(norm(probe)[0, 2].abs()) < 1e3


def test_adapter_standardises_valid_frames_and_keeps_padding_zero() -> None:
    cfg = AdapterConfig(name="mlp", hidden_size=16, num_layers=1, input_norm="standardize",
                        output_norm=False)
    adapter = build_adapter(cfg, 4, 8, 25.0)
    # A mapping that would show any leak of padding: the identity on 4 of 8 outputs.
    with torch.no_grad():
        adapter.net[0].weight.zero_()
        adapter.net[0].weight[:4, :4] = torch.eye(4)
        adapter.net[0].bias.zero_()
    x = torch.randn(2, 5, 4) * 3 + 7
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    valid = x[mask].double()
    adapter.input_norm.fit(valid.sum(0), valid.pow(2).sum(0), valid.shape[0])
    tokens, tmask = adapter(x, mask)
    expected = (x - adapter.input_norm.mean) / adapter.input_norm.std
    assert torch.allclose(tokens[0, :, :4], expected[0], atol=1e-5)
    assert torch.allclose(tokens[1, :3, :4], expected[1, :3], atol=1e-5)
    assert torch.equal(tokens[1, 3:], torch.zeros(2, 8)) and tmask.tolist() == mask.tolist()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("input_norm")
    cfg = tiny_train_config(work, make_tiny_llm(work / "llm"), steps=4)
    cfg["model"]["modalities"]["audio"]["adapter"]["input_norm"] = "standardize"
    return work, cfg


def test_trainer_fits_statistics_saves_them_and_resume_keeps_them(base: tuple[Path, dict]
                                                                  ) -> None:
    work, cfg = base
    cfg = copy.deepcopy(cfg)
    cfg["output_dir"] = str(work / "run")
    cfg["train"]["save_every"] = 2
    trainer = Trainer(load_train_config(cfg))
    norm = trainer.model.adapters["audio"].input_norm
    assert norm.fitted  # before the first step
    # The statistics are those of the frames the adapter is fed (encoder + layer selection).
    paths = sorted({str(p) for c in trainer.train_data.items for p in c.audio_paths()})
    items = [trainer.train_data.load_audio(Path(p)) for p in paths]
    media = trainer.model.processor.batch_media("audio", items, list(range(len(items))), paths)
    feats, mask = trainer.model.encode_media("audio", media)
    valid = feats[mask].double()
    assert torch.allclose(norm.mean.double(), valid.mean(0), atol=1e-4)
    assert torch.allclose(norm.std.double(), valid.std(0, unbiased=False), rtol=1e-3, atol=1e-5)
    fitted = norm.mean.clone()
    out = trainer.fit()
    loaded = MusicLLM.load(out)
    assert torch.equal(loaded.adapters["audio"].input_norm.mean, fitted)
    # A resumed run takes the checkpoint's statistics and never refits them: mark them.
    ckpt = Path(cfg["output_dir"]) / "checkpoint-000002"
    state = load_file(str(ckpt / "trainable.safetensors"))
    key = "adapters.audio.input_norm.mean"
    state[key] = state[key] + 100.0
    save_file(state, str(ckpt / "trainable.safetensors"))
    resumed = Trainer(load_train_config(cfg), resume=ckpt)
    assert torch.equal(resumed.model.adapters["audio"].input_norm.mean, state[key])
