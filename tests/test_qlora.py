"""QLoRA on CPU: a 4-bit (nf4) base LLM with LoRA on top trains, its loss goes down, and
the adapters and LoRA weights stay in full precision."""

from __future__ import annotations

import copy
from pathlib import Path

import bitsandbytes  # noqa: F401 - a missing dependency must fail, not skip
import torch

from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import make_tiny_llm  # noqa: E402
from mullm.train import Trainer, load_train_config  # noqa: E402
from mullm.train.metrics import read_metrics  # noqa: E402
from mullm.train.toydata import tiny_train_config  # noqa: E402


def test_qlora_trains_and_keeps_adapters_unquantised(tmp_path: Path) -> None:
    import bitsandbytes as bnb

    llm = make_tiny_llm(tmp_path / "llm")
    cfg = copy.deepcopy(tiny_train_config(tmp_path, llm, steps=12, save_every=12))
    cfg["model"]["llm"]["quantization"] = "4bit"
    trainer = Trainer(load_train_config(cfg))
    model = trainer.model
    four_bit = [m for m in model.llm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "the base LLM's linear layers should be 4-bit"
    assert all(m.weight.dtype == torch.uint8 for m in four_bit)  # packed nf4
    for p in model.adapters.parameters():
        assert p.dtype == torch.float32
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.adapters.modules())
    lora = model.trainable_groups()["lora"]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    trainer.fit()
    losses = [r["loss"] for r in read_metrics(Path(cfg["output_dir"]) / "metrics.jsonl")]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    # the checkpoint reloads onto a freshly quantised base and scores identically
    loaded = MusicLLM.load(Path(cfg["output_dir"]) / "checkpoint-000012")
    batch = trainer.collate([trainer.train_data[i] for i in range(2)])
    args = {k: batch[k] for k in ("input_ids", "attention_mask", "labels", "media")}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**args)["loss"], loaded(**args)["loss"], atol=1e-5)
