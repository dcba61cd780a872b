"""MusicLLM on a tiny seeded LLM: every adapter x injection pair."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_dict

from mullm.config import load_model_config
from mullm.errors import ModelLoadError
from mullm.model import MusicLLM

ADAPTERS = ["linear", "mlp", "qformer", "window_qformer", "perceiver"]
INJECTIONS = ["splice", "xattn", "prefix"]
PAIRS = list(itertools.product(ADAPTERS, INJECTIONS))

CONVS = [
    [{"role": "user", "content": "<audio> Describe it."},
     {"role": "assistant", "content": "slow piano in minor"}],
    [{"role": "user", "content": "Compare <audio> and <audio>."},
     {"role": "assistant", "content": "the second is fast"}],
]


def _media() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"audio": [torch.randn(8000, generator=g) * 0.1]},
            {"audio": [torch.randn(4000, generator=g) * 0.1,
                       torch.randn(12000, generator=g) * 0.1]}]


def build(llm_dir: Path, adapter: str, injection: str, **kw: str) -> MusicLLM:
    return MusicLLM(load_model_config(tiny_model_dict(llm_dir, adapter, injection, **kw)))


def _open_gates(model: MusicLLM) -> None:
    with torch.no_grad():
        for inj in model.injectors.values():
            for name, p in inj.named_parameters():
                if "gate" in name:
                    p.fill_(0.7)


@pytest.mark.parametrize("adapter,injection", PAIRS)
def test_pair(tiny_llm_dir: Path, tmp_path: Path, adapter: str, injection: str) -> None:
    model = build(tiny_llm_dir, adapter, injection)
    batch = model.processor(CONVS, _media())
    ids, am, labels, media = (batch["input_ids"], batch["attention_mask"], batch["labels"],
                              batch["media"])

    # Shapes: full logits over the vocabulary for every position.
    out = model(ids, am, media=media)
    assert out["logits"].shape == (*ids.shape, model.llm.get_output_embeddings().weight.shape[0])

    # Zero-initialised gates: xattn / prefix leave the LLM's logits exactly unchanged.
    if injection != "splice":
        with torch.no_grad():
            plain = model.llm(input_ids=ids, attention_mask=am,
                              position_ids=(am.cumsum(-1) - 1).clamp(min=0)).logits
        assert torch.equal(out["logits"], plain)

    # Gradients reach exactly the trainable parameters.
    model.train()
    loss = model(ids, am, labels, media)["loss"]
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trainable == with_grad
    expected = sum(p.numel() for ps in model.trainable_groups().values() for p in ps)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert not any(p.requires_grad for p in model.encoders.parameters())
    if injection != "splice":
        gates = [p for n, p in model.injectors.named_parameters() if "gate" in n]
        assert any(float(g.grad.abs().sum()) > 0 for g in gates)

    # A few optimiser steps on a fixed batch lower the loss.
    model.zero_grad()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(6):
        opt.zero_grad()
        loss = model(ids, am, labels, media)["loss"]
        first = float(loss) if first is None else first
        loss.backward()
        opt.step()
    assert float(model(ids, am, labels, media)["loss"]) < first

    # Save then load reproduces logits exactly.
    model.eval()
    _open_gates(model)
    with torch.no_grad():
        ref = model(ids, am, media=media)["logits"]
    model.save_pretrained(tmp_path / "m")
    again = MusicLLM.load(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(again(ids, am, media=media)["logits"], ref)

    # Cached generation (generate + KV cache) equals an uncached greedy loop.
    prompt = [CONVS[1][:1]]
    med = [_media()[1]]
    got = again.generate(**_gen_inputs(again, prompt, med), max_new_tokens=6,
                         do_sample=False)
    want = _greedy_no_cache(again, prompt, med, 6)
    assert got.tolist() == want.tolist()


def _gen_inputs(model: MusicLLM, convs: list, media: list) -> dict:
    b = model.processor(convs, media, add_generation_prompt=True, padding_side="left")
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
            "media": b["media"]}


@torch.no_grad()
def _greedy_no_cache(model: MusicLLM, convs: list, media: list, n: int) -> torch.Tensor:
    b = _gen_inputs(model, convs, media)
    ids, am = b["input_ids"], b["attention_mask"]
    new = []
    for _ in range(n):
        logits = model(ids, am, media=b["media"])["logits"][:, -1]
        for tid in model.added_token_ids:
            logits[:, tid] = -float("inf")
        nxt = logits.argmax(-1, keepdim=True)
        new.append(nxt)
        ids = torch.cat([ids, nxt], 1)
        am = torch.cat([am, torch.ones_like(nxt)], 1)
    return torch.cat(new, 1)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_batched_generation_matches_single(tiny_llm_dir: Path, injection: str) -> None:
    model = build(tiny_llm_dir, "qformer", injection).eval()
    _open_gates(model)
    convs = [c[:1] for c in CONVS]
    media = _media()
    both = model.generate_text(convs, media, max_new_tokens=5)
    one = [model.generate_text([c], [m], max_new_tokens=5)[0] for c, m in zip(convs, media)]
    assert both == one


def test_padding_does_not_change_tokens(tiny_llm_dir: Path) -> None:
    model = build(tiny_llm_dir, "window_qformer", "splice").eval()
    wave = torch.randn(6000)
    alone = model.processor.batch_media("audio", [wave], [0], ["a"])
    padded = model.processor.batch_media("audio", [wave, torch.randn(16000)], [0, 1], ["a", "b"])
    with torch.no_grad():
        t1, m1 = model.get_media_features("audio", alone)
        t2, m2 = model.get_media_features("audio", padded)
    n = int(m1[0].sum())
    assert int(m2[0].sum()) == n
    torch.testing.assert_close(t1[0, :n], t2[0, :n], atol=1e-5, rtol=1e-5)


def test_samples_with_different_media_counts(tiny_llm_dir: Path) -> None:
    model = build(tiny_llm_dir, "mlp", "splice")
    convs = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yes"}],
             [{"role": "user", "content": "<audio><audio><audio>"},
              {"role": "assistant", "content": "three"}],
             [{"role": "user", "content": "<audio> one"}, {"role": "assistant", "content": "one"}]]
    media = [{}, {"audio": [torch.randn(3000), torch.randn(5000), torch.randn(7000)]},
             {"audio": [torch.randn(2000)]}]
    batch = model.processor(convs, media)
    assert batch["media"]["audio"].sample_index.tolist() == [1, 1, 1, 2]
    assert torch.isfinite(model(**{k: batch[k] for k in ("input_ids", "attention_mask",
                                                           "labels", "media")})["loss"])


def test_labels_only_on_assistant_turns(tiny_llm_dir: Path) -> None:
    model = build(tiny_llm_dir, "mlp", "splice")
    conv = [{"role": "user", "content": "<audio> q1"}, {"role": "assistant", "content": "a b"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "c"}]
    batch = model.processor([conv], [{"audio": [torch.randn(4000)]}])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    text = model.tokenizer.decode(ids[labels != -100])
    assert "a b" in text and "c" in text and "q1" not in text and "q2" not in text
    assert not bool((labels[ids == model.placeholder_ids["audio"]] != -100).any())


@pytest.mark.parametrize("problem", ["empty", "nan", "inf", "rank", "more_markers", "fewer"])
def test_bad_input(tiny_llm_dir: Path, problem: str) -> None:
    model = build(tiny_llm_dir, "mlp", "splice")
    conv = [[{"role": "user", "content": "ok"}],
            [{"role": "user", "content": "<audio> describe"}]]
    wave = torch.randn(4000)
    media: list[dict] = [{}, {"audio": [wave]}]
    if problem == "empty":
        media[1]["audio"] = [torch.zeros(0)]
    elif problem == "nan":
        wave[10] = float("nan")
    elif problem == "inf":
        wave[10] = float("inf")
    elif problem == "rank":
        media[1]["audio"] = [torch.randn(2, 4000)]
    elif problem == "more_markers":
        conv[1][0]["content"] = "<audio> and <audio>"
    elif problem == "fewer":
        media[1]["audio"] = [wave, wave.clone()]
        conv[1][0]["content"] = "<audio> describe"
    with pytest.raises(ValueError, match="sample 1"):
        model.processor(conv, media, add_generation_prompt=True)


def test_model_rejects_placeholder_count_mismatch(tiny_llm_dir: Path) -> None:
    model = build(tiny_llm_dir, "mlp", "splice")
    batch = model.processor([[{"role": "user", "content": "<audio> x"}]],
                            [{"audio": [torch.randn(4000)]}], add_generation_prompt=True)
    ids = batch["input_ids"][:, 1:]  # drop one token: still placeholders, wrong count if cut
    pid = model.placeholder_ids["audio"]
    ids = torch.cat([ids, torch.full((1, 1), pid)], 1)
    with pytest.raises(ValueError, match="sample 0"):
        model(ids, torch.ones_like(ids), media=batch["media"])


def test_saved_model_is_small_and_strict(tiny_llm_dir: Path, tmp_path: Path) -> None:
    model = build(tiny_llm_dir, "qformer", "splice")
    out = model.save_pretrained(tmp_path / "m")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.yaml", "lora", "mullm.json", "processor", "trainable.safetensors"]
    llm_bytes = sum(p.stat().st_size for p in Path(tiny_llm_dir).glob("*.safetensors"))
    saved = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    assert saved < llm_bytes  # only adapters + LoRA + new token rows, never the LLM

    # A missing key is an error that lists it.
    from safetensors.torch import load_file, save_file

    state = load_file(str(out / "trainable.safetensors"))
    dropped = sorted(state)[0]
    state.pop(dropped)
    save_file(state, str(out / "trainable.safetensors"))
    with pytest.raises(ModelLoadError, match="missing"):
        MusicLLM.load(out)


def test_refuses_other_base_weights(tiny_llm_dir: Path, tmp_path: Path) -> None:
    from mullm.testing import make_tiny_llm

    model = build(tiny_llm_dir, "linear", "splice")
    model.save_pretrained(tmp_path / "m")
    other = make_tiny_llm(tmp_path / "other", seed=5)
    cfg = (tmp_path / "m" / "config.yaml").read_text().replace(str(tiny_llm_dir), str(other))
    (tmp_path / "m" / "config.yaml").write_text(cfg)
    with pytest.raises(ModelLoadError, match="fingerprint"):
        MusicLLM.load(tmp_path / "m")


def test_load_from_yaml_and_chat(tiny_llm_dir: Path, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": tiny_model_dict(tiny_llm_dir, "mlp", "splice")}))
    model = MusicLLM.load(path).eval()
    _open_gates(model)
    wave = torch.randn(8000)
    reply = model.chat("What is playing?", audio=wave, max_new_tokens=4)
    # chat is generate_text on one conversation with the clip before the prompt.
    msgs = [{"role": "user", "content": "What is playing?"}]
    assert reply == model.generate_text([msgs], [{"audio": [wave]}], max_new_tokens=4)[0]
    assert len(model.tokenizer(reply, add_special_tokens=False)["input_ids"]) <= 4
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    follow = model.chat("And the tempo?", audio=wave, max_new_tokens=4, history=history)
    with_history = history + [{"role": "user", "content": "And the tempo?"}]
    assert follow == model.generate_text([with_history], [{"audio": [wave]}],
                                         max_new_tokens=4)[0]
    # The history really reaches the model: it is in the prompt the processor builds.
    ids = model.processor([with_history], [{"audio": [wave]}], add_generation_prompt=True)
    assert "hello" in model.tokenizer.decode(ids["input_ids"][0])


def test_image_and_audio_in_one_sample(tiny_llm_dir: Path) -> None:
    cfg = tiny_model_dict(tiny_llm_dir, "mlp", "splice")
    cfg["modalities"]["image"] = {
        "encoder": {"name": "tiny_image"},
        "adapter": {"name": "perceiver", "hidden_size": 32, "num_queries": 3, "num_heads": 4},
        "injection": {"kind": "splice"}}
    model = MusicLLM(load_model_config(cfg))
    convs = [[{"role": "user", "content": "<image> then <audio>"},
              {"role": "assistant", "content": "ok"}],
             [{"role": "user", "content": "only <audio>"}, {"role": "assistant", "content": "ok"}]]
    img = torch.rand(3, 32, 32)
    media = [{"audio": [torch.randn(4000)], "image": [img]}, {"audio": [torch.randn(3000)]}]
    batch = model.processor(convs, media)
    ids = batch["input_ids"]
    assert int((ids == model.placeholder_ids["image"]).sum()) == 3
    out = model(ids, batch["attention_mask"], batch["labels"], batch["media"])
    assert torch.isfinite(out["loss"])


def test_full_finetune_saves_and_reloads_exactly(tiny_llm_dir: Path, tmp_path: Path) -> None:
    model = build(tiny_llm_dir, "linear", "splice", policy="full")
    batch = model.processor(CONVS, _media())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(batch["input_ids"], batch["attention_mask"], batch["labels"],
          batch["media"])["loss"].backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(batch["input_ids"], batch["attention_mask"], media=batch["media"])["logits"]
    model.save_pretrained(tmp_path / "m")
    again = MusicLLM.load(tmp_path / "m").eval()
    with torch.no_grad():
        got = again(batch["input_ids"], batch["attention_mask"], media=batch["media"])["logits"]
    assert torch.equal(got, ref)


@pytest.mark.parametrize("injection", ["xattn", "prefix"])
def test_threads_see_only_their_own_media(tiny_llm_dir: Path, injection: str) -> None:
    """The xattn / prefix media state is scoped to a call: four threads running forwards on
    one model at once, each with its own clip, get exactly the logits of running alone, and
    no state is left on the model afterwards."""
    import threading

    from mullm.injection import _ACTIVE

    model = build(tiny_llm_dir, "qformer", injection).eval()
    _open_gates(model)
    g = torch.Generator().manual_seed(3)
    conv = [[{"role": "user", "content": "<audio> Describe it."}]]
    batches = [model.processor(conv, [{"audio": [torch.randn(6000, generator=g) * (i + 1)]}],
                               add_generation_prompt=True) for i in range(4)]
    with torch.no_grad():
        alone = [model(**b)["logits"] for b in batches]
    assert not torch.equal(alone[0], alone[1])  # the clips matter, so a leak would show
    got: dict[int, torch.Tensor] = {}
    start = threading.Barrier(4)

    def work(i: int) -> None:
        start.wait()
        with torch.no_grad():
            for _ in range(3):
                got[i] = model(**batches[i])["logits"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(4):
        assert torch.equal(got[i], alone[i])
    assert _ACTIVE.get() is None
    # Without media the same model is the plain LLM again (nothing was left behind).
    text = model.processor([[{"role": "user", "content": "hi"}]], add_generation_prompt=True)
    with torch.no_grad():
        plain = model.llm(input_ids=text["input_ids"]).logits
        assert torch.equal(model(**text)["logits"], plain)


def test_building_a_model_leaves_the_global_rng_alone(tiny_llm_dir: Path) -> None:
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    a = build(tiny_llm_dir, "mlp", "splice")
    assert torch.equal(torch.rand(3), want)
    b = build(tiny_llm_dir, "mlp", "splice")  # and the model itself is still seeded
    for (n, p), (_, q) in zip(a.adapters.named_parameters(), b.adapters.named_parameters()):
        assert torch.equal(p, q), n


def test_prompt_longer_than_the_context_is_refused_early(tiny_llm_dir: Path) -> None:
    model = build(tiny_llm_dir, "mlp", "splice")
    limit = model.context_length
    assert limit == 512
    long = " ".join(["music"] * (limit + 10))
    with pytest.raises(ValueError, match=r"context of 512 tokens"):
        model.generate_text([[{"role": "user", "content": long}]], max_new_tokens=4)
    # Close to the limit: generation is capped at the room left, with a warning.
    def prompt(n: int) -> dict:
        return model.processor([[{"role": "user", "content": " ".join(["music"] * n)}]],
                               add_generation_prompt=True, padding_side="left")

    one, two = (prompt(k)["input_ids"].shape[1] for k in (1, 2))
    near = prompt(1 + (limit - 6 - one) // (two - one))
    room = limit - near["input_ids"].shape[1]
    assert 0 < room <= 8
    with pytest.warns(UserWarning, match="run past the context"):
        new = model.generate(**near, max_new_tokens=50)
    assert new.shape[1] <= room
