"""Device correctness of every encoder family: hidden states and mask come back on the
input's device, and ``Encoder.forward`` refuses an encoder that breaks this.

There is no GPU here, so the tests make "a tensor created without ``device=``" land on a
device other than the input's: inside ``with torch.device("meta")`` every factory call
(``torch.tensor``, ``torch.zeros``, ``torch.arange`` ...) without an explicit device makes a
meta tensor, while the inputs and the encoder stay on the CPU. That is the situation of a
CUDA input with the CPU as default device, turned around: a CPU-only creation in an encoder's
output path either breaks the computation or leaves a meta tensor in the output, and both
fail here (before this check, CLAP, the vision towers and Jukebox built their masks this way).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mullm.config import EncoderConfig, from_dict  # noqa: E402
from mullm.encoders import Encoder, EncoderOutput, build_encoder  # noqa: E402
from mullm.media import pad_stack  # noqa: E402
from mullm.testing import (  # noqa: E402
    TINY_ENCODER_MODALITY,
    tiny_encoder_config,
    tiny_media_item,
)

# laion_clap reads real-size 10 s HTSAT windows: seconds on a CPU, so marked slow.
FAMILIES = [pytest.param(name, marks=pytest.mark.slow) if name == "laion_clap" else name
            for name in TINY_ENCODER_MODALITY]


def _batch(enc: Encoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Two items of different lengths (audio) or two images / clips."""
    items = [tiny_media_item(enc, 1.0, seed=0), tiny_media_item(enc, 0.4, seed=1)]
    if enc.modality == "audio":
        return pad_stack(items)
    x = torch.stack(items)
    n = torch.full((2,), int(enc.sample_rate) if enc.modality == "video" else 1)
    return x, n


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_returns_on_the_input_device(name: str, tmp_path: Path) -> None:
    enc = build_encoder(from_dict(EncoderConfig, tiny_encoder_config(name, tmp_path)))
    x, n = _batch(enc)
    plain = enc(x, n)
    with torch.device("meta"):
        out = enc(x, n)
    assert out.hidden_states.device == x.device and out.mask.device == x.device
    # The same numbers: the default device changed nothing but where stray tensors land.
    torch.testing.assert_close(out.hidden_states, plain.hidden_states)
    assert torch.equal(out.mask, plain.mask)
    assert out.mask.sum(1).tolist() == [enc.num_frames(int(k)) for k in n]


class _Stray(Encoder):
    """An encoder that returns field ``stray`` (if any) on the meta device whatever its
    input's device."""

    modality = "audio"
    sample_rate = 100
    frame_rate = 10.0

    def __init__(self, stray: str | None) -> None:
        super().__init__(EncoderConfig(name="stray"))
        self.stray = stray

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        frames = (lengths + 9) // 10
        mask = torch.arange(int(frames.max()))[None] < frames[:, None]
        hidden = torch.zeros(inputs.shape[0], 1, mask.shape[1], 1)
        if self.stray == "hidden_states":
            hidden = hidden.to("meta")
        elif self.stray == "mask":
            mask = mask.to("meta")
        return EncoderOutput(hidden_states=hidden, mask=mask)


@pytest.mark.parametrize("stray", ["hidden_states", "mask"])
def test_contract_refuses_output_on_another_device(stray: str) -> None:
    enc = _Stray(stray)
    x, n = torch.zeros(2, 30), torch.tensor([30, 12])
    with pytest.raises(RuntimeError, match=rf"_Stray\.encode returned {stray} on meta for "
                                           r"inputs on cpu"):
        enc(x, n)


def test_contract_accepts_matching_devices() -> None:
    out = _Stray(None)(torch.zeros(2, 30), torch.tensor([30, 12]))
    assert out.mask.sum(1).tolist() == [3, 2]
