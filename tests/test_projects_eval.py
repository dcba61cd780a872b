"""Every reproduction project instantiates on tiny stand-ins, takes a training step of its
first stage and scores one evaluation batch; its audio token count for a 30 s clip is the
number its README states.

The stand-ins keep what defines the system (adapter kind and settings, pooling, injection
kind, LoRA / full / frozen policy, the first stage's trainable groups) and shrink what only
sets the scale: the LLM is a tiny random Llama, each encoder the tiny random configuration of
its family (``mullm.testing.tiny_encoder_config``; laion_clap's real-size HTSAT is replaced
by the transformers CLAP family, the one slow encoder on a CPU), attention heads and layer
bands are mapped onto the tiny LLM's 4 layers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mullm.config import load_model_config, to_dict
from mullm.eval.scoring import generate_replies, score_options
from mullm.model import MusicLLM
from mullm.testing import tiny_encoder_config, tiny_media_item
from mullm.train.config import load_train_config
from mullm.train.trainer import select_groups, set_trainable

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = sorted(p.parent.name for p in ROOT.glob("projects/*/train.yaml"))
# Audio tokens per 30 s clip, as each project's README states (encoder frame rate x pooling).
TOKENS_30S = {"mu-llama": 1, "musilingo": 7, "llark": 300, "salmonn-style": 133,
              "flamingo-style": 64, "m2ugen": 1}
FAMILY = {"laion_clap": "clap"}  # the stand-in family where the real one is too slow
# Prefix bands of M2UGen (audio, image, video) mapped onto the tiny LLM's layers.
TINY_BANDS = {"audio": [0, 1], "image": [2], "video": [3]}


def tiny_project(name: str, llm_dir: Path, work: Path) -> tuple[MusicLLM, list[str]]:
    """The project's model on tiny stand-ins, and its first stage's trainable patterns."""
    cfg = load_train_config(ROOT / "projects" / name / "train.yaml")
    model = to_dict(cfg.model)
    llm = model["llm"]
    model["llm"] = {"name_or_path": str(llm_dir), "policy": llm["policy"],
                    **({"lora": {**llm["lora"], "r": 4}} if llm["policy"] == "lora" else {})}
    for modality, mod in model["modalities"].items():
        enc = mod["encoder"]
        family = FAMILY.get(enc["name"], enc["name"])
        tiny = tiny_encoder_config(family, work)
        layers = enc.get("layers")
        mod["encoder"] = {**tiny, "layers": layers if layers in ("all", -1) else -1,
                          "layer_reduce": enc.get("layer_reduce", "mean")}
        inj = mod["injection"]
        if inj["kind"] in ("xattn", "prefix"):
            inj["num_heads"] = 4
        if inj["kind"] == "xattn":
            inj["every_n_layers"] = 2
        if inj["kind"] == "prefix":
            if inj.get("layers"):
                inj["layers"] = TINY_BANDS[modality]
            else:
                inj["top_k_layers"] = min(inj.get("top_k_layers") or 2, 2)
        ad = mod["adapter"]
        if ad.get("num_heads"):
            ad["num_heads"] = 4
        if ad.get("hidden_size", 0) > 256:  # only the width shrinks: kinds, queries, pooling
            ad["hidden_size"] = 64       # and windows stay the project's
    if model.get("music_output"):
        # The offline stand-in decoder in place of MusicGen / AudioLDM2 weights; the token
        # count and projector kind stay the project's.
        model["music_output"]["decoder"] = {**model["music_output"]["decoder"],
                                            "name": "musicgen",
                                            "checkpoint": "offline:tiny-random-musicgen"}
    stage = next(iter(cfg.stages.values()))
    return MusicLLM(load_model_config(model)), list(stage.trainable)


@pytest.mark.parametrize("name", PROJECTS)
def test_project_trains_a_step_and_scores_a_batch(name: str, tiny_llm_dir: Path,
                                                  tmp_path: Path) -> None:
    assert set(PROJECTS) == set(TOKENS_30S), "every project needs its stated token count"
    model, trainable = tiny_project(name, tiny_llm_dir, tmp_path)
    readme = (ROOT / "projects" / name / "README.md").read_text()
    assert f"{TOKENS_30S[name]} audio token" in readme

    # Token count of a 30 s clip: the processor's arithmetic, no encoder run.
    enc = model.encoders["audio"]
    wave = torch.zeros(int(enc.sample_rate * 30))
    n = model.processor.num_tokens("audio", wave)
    assert n == TOKENS_30S[name], f"{name}: {n} audio tokens for 30 s, README says " \
                                  f"{TOKENS_30S[name]}"

    # One training step of the first stage.
    n_train = set_trainable(model, select_groups(model.trainable_groups(), trainable, "first"))
    assert n_train > 0
    media, marks = {}, []
    for modality in model.config.modalities:
        item = tiny_media_item(model.encoders[modality], 1.0, seed=1)
        media[modality] = [item]
        marks.append(f"<{modality}>")
    conv = [[{"role": "user", "content": " ".join(marks) + " Describe it."},
             {"role": "assistant", "content": "a slow piano piece"}]]
    model.train()
    batch = model.processor(conv, [media])
    before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    loss = model(**batch)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    opt.step()
    changed = sum(not torch.equal(before[k], p) for k, p in model.named_parameters()
                  if p.requires_grad)
    assert changed > 0, f"{name}: the step changed no trainable tensor"

    # One evaluation batch: option scoring (the suite's scorer) and generation.
    model.eval()
    audio = tiny_media_item(enc, 1.0, seed=2)
    prompts = [([{"role": "user", "content": "<audio> Is it fast or slow?"}],
                {"audio": [audio]}),
               ([{"role": "user", "content": "Is it fast or slow?"}], {})]
    scores = score_options(model, prompts, [["fast", "slow"], ["fast", "slow", "moderate"]])
    assert [len(s) for s in scores] == [2, 3]
    assert all(s < 0 for row in scores for s in row)
    replies = generate_replies(model, prompts, max_new_tokens=3)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
