"""Music output on tiny stand-ins: output tokens, projector, MusicGen conditioning that is
really used, classifier-free guidance, save/load, training signal and editing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import music_model_dict

from mullm.config import load_model_config
from mullm.errors import ConfigError
from mullm.model import MusicLLM
from mullm.outputs import GeneratedAudio
from mullm.outputs.config import MusicDecoderConfig
from mullm.outputs.decoders import build_decoder
from mullm.outputs.vocab import output_token_text, strip_output_tokens

AUD = output_token_text(4)
REQUEST = [{"role": "user", "content": "Compose a calm piano piece."},
           {"role": "assistant", "content": f"Here is a calm piano piece. {AUD}"}]


def build(llm_dir: Path, mg_dir: Path, **kw: object) -> MusicLLM:
    return MusicLLM(load_model_config(music_model_dict(llm_dir, mg_dir, **kw)))


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def model(tiny_llm_dir: Path, tiny_musicgen_dir: Path) -> MusicLLM:
    return build(tiny_llm_dir, tiny_musicgen_dir).eval()


# ------------------------------------------------------------------------- decoder alone


def test_musicgen_projector_path_gives_the_requested_length(tiny_musicgen_dir: Path) -> None:
    dec = build_decoder(MusicDecoderConfig(checkpoint=str(tiny_musicgen_dir), do_sample=False,
                                           condition_tokens=6, duration_s=0.4))
    assert (dec.sample_rate, dec.condition_shape) == (32000, (6, 32))
    cond = torch.randn(2, 6, 32)
    for seconds in (0.4, 1.3):
        waves = dec.generate_from_condition(cond, duration_s=seconds)
        assert [w.shape for w in waves] == [(int(round(seconds * 32000)),)] * 2
        assert all(w.dtype == np.float32 and np.abs(w).max() <= 1.0 for w in waves)
    # A different conditioning tensor is a different clip (greedy: nothing random).
    other = dec.generate_from_condition(cond + 1.0, duration_s=0.4)
    assert not np.array_equal(other[0], dec.generate_from_condition(cond, duration_s=0.4)[0])
    with pytest.raises(ValueError, match=r"\(B, 6, 32\)"):
        dec.generate_from_condition(torch.randn(1, 5, 32))
    # The text path (MusicGen's own T5) and the regression target's shape and padding.
    assert dec.generate_from_text(["a slow piano"], duration_s=0.4)[0].shape == (12800,)
    target = dec.text_condition(["slow", "the music is a fast march with drums"])
    assert target.shape == (2, 6, 32) and not target.requires_grad
    n = len(dec.tokenizer("slow")["input_ids"])
    assert n < 6 and float(target[0, n:].abs().sum()) == 0.0  # masked like MusicGen's own


def test_guidance_runs_a_real_unconditional_branch_and_scale_1_is_the_conditional_alone(
        tiny_musicgen_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.generation.logits_process import ClassifierFreeGuidanceLogitsProcessor

    seen: dict[str, list] = {"enc": [], "mix": []}
    dec = build_decoder(MusicDecoderConfig(checkpoint=str(tiny_musicgen_dir), do_sample=False,
                                           condition_tokens=6, duration_s=0.2,
                                           guidance_scale=1.0))

    def grab(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen["enc"].append((kwargs["encoder_hidden_states"].clone(),
                            kwargs["encoder_attention_mask"].clone()))

    original = ClassifierFreeGuidanceLogitsProcessor.__call__

    def mix(self: ClassifierFreeGuidanceLogitsProcessor, ids: torch.Tensor,
            scores: torch.Tensor) -> torch.Tensor:
        out = original(self, ids, scores)
        seen["mix"].append((self.guidance_scale, scores.clone(), out.clone()))
        return out

    monkeypatch.setattr(ClassifierFreeGuidanceLogitsProcessor, "__call__", mix)
    dec.model.decoder.register_forward_pre_hook(grab, with_kwargs=True)
    cond = torch.randn(2, 6, 32)

    alone = dec.generate_from_condition(cond)
    # Scale 1: two rows of the projector's states reach the decoder, no mixing at all, and
    # the clip is MusicGen's own generation from those states with no guidance.
    states, mask = seen["enc"][0]
    assert states.shape[0] == 2 and torch.equal(states, cond) and bool(mask.all())
    assert seen["mix"] == []
    with torch.no_grad():
        ref = dec.model.generate(encoder_outputs=(cond,), attention_mask=torch.ones(2, 6).long(),
                                 do_sample=False, **{"max_new_tokens": 10 + 3})
    assert np.array_equal(alone[0], ref[0, 0, :6400].numpy().clip(-1, 1))

    seen["enc"].clear()
    dec.config.guidance_scale = 3.0
    guided = dec.generate_from_condition(cond)
    states, mask = seen["enc"][0]
    # Scale 3: the batch is doubled with MusicGen's null condition (zeros, masked out) ...
    assert states.shape[0] == 4 and torch.equal(states[:2], cond)
    assert float(states[2:].abs().sum()) == 0.0 and mask[:2].all() and not mask[2:].any()
    # ... and every step mixes uncond + 3 * (cond - uncond).
    scale, scores, out = seen["mix"][0]
    c, u = scores.split(scores.shape[0] // 2)
    assert scale == 3.0 and torch.allclose(out, u + 3.0 * (c - u))
    assert not np.array_equal(guided[0], alone[0])  # guidance changes the clip


def test_audioldm2_on_a_tiny_random_diffusers_pipeline(tmp_path: Path,
                                                       tiny_llm_dir: Path) -> None:
    from mullm.testing import make_tiny_audioldm2

    folder = make_tiny_audioldm2(tmp_path / "tiny-audioldm2")
    caption = "a slow piano"
    from transformers import AutoTokenizer

    n = len(AutoTokenizer.from_pretrained(folder, subfolder="tokenizer_2")(caption).input_ids)
    cfg = MusicDecoderConfig(name="audioldm2", checkpoint=str(folder), condition_tokens=n,
                             duration_s=0.5, guidance_scale=1.0, num_inference_steps=2, seed=0)
    dec = build_decoder(cfg)
    # One packed token: n T5 states of 32 and the pipeline's 8 GPT-2 states of 16.
    assert dec.condition_shape == (1, n * 32 + 8 * 16) and dec.sample_rate == 16000
    target = dec.text_condition([caption])
    assert target.shape == (1, 1, n * 32 + 128)
    from_condition = dec.generate_from_condition(target)
    from_text = dec.generate_from_text([caption])
    assert from_condition[0].shape == from_text[0].shape == (8000,)
    # The tiny vocoder's output is ~1e-5 loud: compare relative to the clip's peak.
    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max() / np.abs(b).max())

    # The packing is lossless: the caption's own embedding, handed over as prompt_embeds and
    # generated_prompt_embeds, renders the pipeline's own text-prompted clip.
    assert rel(from_condition[0], from_text[0]) < 1e-4
    assert rel(dec.generate_from_condition(target * 3.0)[0], from_condition[0]) > 1e-2
    dec.config.guidance_scale = 2.5   # the empty prompt's branch, mixed in
    assert rel(dec.generate_from_condition(target)[0], from_condition[0]) > 1e-2
    # Through a MusicLLM: the projector feeds AudioLDM2 and the clip is recorded as such.
    d = music_model_dict(tiny_llm_dir, folder, decoder="audioldm2", condition_tokens=4,
                         guidance_scale=2.0)
    clip = MusicLLM(load_model_config(d)).eval().render_music(REQUEST)[0]
    assert (clip.sample_rate, clip.waveform.shape, clip.mode) == (16000, (6400,), "projector")
    assert clip.meta["decoder"] == "audioldm2" and clip.meta["num_inference_steps"] == 2


# -------------------------------------------------------------------- tokens in the LLM


def test_output_tokens_are_vocabulary_entries_that_may_be_generated(model: MusicLLM) -> None:
    tok = model.tokenizer
    ids = model.outputs["music"].token_ids
    assert tok.convert_ids_to_tokens(ids) == ["[AUD0]", "[AUD1]", "[AUD2]", "[AUD3]"]
    text = f"Here it is. {AUD}"
    assert tok.decode(tok.encode(text, add_special_tokens=False),
                      skip_special_tokens=True) == text  # replies keep them
    assert strip_output_tokens(text) == "Here it is."
    # Unlike the placeholders, output tokens may be generated: make [AUD0..3] the likeliest
    # continuation and greedy generation emits the run, kept in the decoded reply.
    bridge = model.outputs["music"]
    saved = bridge.tokens.output_rows.detach().clone()
    prompt = model.processor([REQUEST[:1]], add_generation_prompt=True)
    with torch.no_grad():
        hidden = model.last_hidden_state(prompt["input_ids"], prompt["attention_mask"])[0, -1]
        for k in range(4):
            bridge.tokens.output_rows[k] = hidden * 50.0
    try:
        reply = model.generate_text([REQUEST[:1]], max_new_tokens=4)[0]
    finally:
        with torch.no_grad():
            bridge.tokens.output_rows.copy_(saved)
    assert reply.startswith("[AUD")


def test_gradients_reach_the_projector_and_the_new_token_rows_only(
        tiny_llm_dir: Path, tiny_musicgen_dir: Path) -> None:
    model = build(tiny_llm_dir, tiny_musicgen_dir)
    model.train()
    groups = model.trainable_groups()
    assert {"output_tokens", "output_projector"} <= set(groups)
    batch = model.processor([REQUEST, REQUEST], [{}, {}])
    out = model(**batch, music_captions=["calm slow piano", None])
    assert set(out) >= {"loss", "lm_loss", "generation_loss", "num_tokens"}
    assert torch.allclose(out["loss"], out["lm_loss"] + out["generation_loss"])
    out["loss"].backward()
    rows = model.outputs["music"].tokens
    assert rows.input_rows.grad.abs().sum(1).gt(0).all()   # every token's input row
    assert rows.output_rows.grad.abs().sum(1).gt(0).all()  # and output row
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.outputs["music"].projector.parameters() if p.dim() > 1)
    # The vocabulary itself stays frozen: only the n rows train.
    assert model.llm.get_input_embeddings().weight.grad is None
    # A batch without music targets still gives the projector a (zero) gradient: DDP needs
    # one for every trainable parameter, and the loss is unchanged.
    model.zero_grad(set_to_none=True)
    plain = model(**batch)
    plain["loss"].backward()
    with torch.no_grad():
        assert torch.equal(plain["loss"].detach(), model(**batch)["loss"])
    assert all(p.grad is not None and float(p.grad.abs().sum()) == 0.0
               for p in model.outputs["music"].projector.parameters())
    # A captioned sample whose reply lost its output tokens is an error, not a silent skip.
    cut = [REQUEST[0], {"role": "assistant", "content": "Here it is."}]
    with pytest.raises(ValueError, match="no complete run of the 4 output tokens"):
        model(**model.processor([cut], [{}]), music_captions=["calm"])
    # The projector loss alone lowers under a few steps (projector + rows).
    model.zero_grad()
    params = groups["output_tokens"] + groups["output_projector"]
    opt = torch.optim.Adam(params, lr=3e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        gen = model(**batch, music_captions=["calm slow piano", "fast guitar"])["generation_loss"]
        loss = model.outputs["music"].generation_loss(
            model.last_hidden_state(batch["input_ids"], batch["attention_mask"]),
            batch["input_ids"], ["calm slow piano", "fast guitar"])
        assert torch.allclose(loss.detach(), gen)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.75 * losses[0]


def test_cosine_loss_and_config_errors(tiny_llm_dir: Path, tiny_musicgen_dir: Path) -> None:
    model = build(tiny_llm_dir, tiny_musicgen_dir)
    model.config.music_output.loss = "cosine"
    gen = model(**model.processor([REQUEST], [{}]), music_captions=["calm"])["generation_loss"]
    assert 0.0 <= float(gen) <= 2.0
    d = music_model_dict(tiny_llm_dir, tiny_musicgen_dir)
    d["music_output"]["decoder"]["guidance_scale"] = 0.5
    with pytest.raises(ConfigError, match="guidance_scale=0.5.*>= 1"):
        load_model_config(d)
    d = music_model_dict(tiny_llm_dir, tiny_musicgen_dir)
    d["music_output"]["projector"]["name"] = "qformer"
    with pytest.raises(ConfigError, match="'qformer' is not allowed.*'mlp', 'transformer'"):
        load_model_config(d)
    d = music_model_dict(tiny_llm_dir, tiny_musicgen_dir)
    d["music_output"]["decoder"]["checkpoint"] = str(tiny_musicgen_dir / "nope")
    with pytest.raises(Exception, match="Real music decoders need their weights"):
        MusicLLM(load_model_config(d))


# ------------------------------------------------------------------------- render_music


def test_render_music_uses_the_projector_not_the_text(tiny_llm_dir: Path,
                                                      tiny_musicgen_dir: Path) -> None:
    a = build(tiny_llm_dir, tiny_musicgen_dir, projector="transformer").eval()
    b = build(tiny_llm_dir, tiny_musicgen_dir, projector="transformer").eval()
    _perturb(b.outputs["music"].projector, seed=3)
    clips_a, clips_b = a.render_music(REQUEST), b.render_music(REQUEST)
    assert len(clips_a) == 1 and isinstance(clips_a[0], GeneratedAudio)
    clip = clips_a[0]
    assert (clip.mode, clip.sample_rate, clip.waveform.shape) == ("projector", 32000, (12800,))
    assert clip.request == REQUEST[0]["content"]
    assert clip.meta["decoder"] == "musicgen" and clip.meta["guidance_scale"] == 3.0
    # Same conversation, same reply text, another projector: another clip. A bridge that
    # prompted the decoder with the reply's text (M2UGen's released inference) would not
    # see the projector at all and give the same clip twice.
    assert not np.array_equal(clips_a[0].waveform, clips_b[0].waveform)
    assert np.array_equal(a.render_music(REQUEST)[0].waveform, clip.waveform)  # greedy
    # Text mode is that baseline, recorded as such; it ignores the projector.
    ta, tb = a.render_music(REQUEST, mode="text"), b.render_music(REQUEST, mode="text")
    assert ta[0].mode == "text" and ta[0].meta["text_prompt"] == "Here is a calm piano piece."
    assert np.array_equal(ta[0].waveform, tb[0].waveform)
    # No output tokens, no clip; two runs, two clips; a model without music output: none.
    assert a.render_music([REQUEST[0], {"role": "assistant", "content": "No."}]) == []
    two = [REQUEST[0], {"role": "assistant", "content": f"One {AUD} and another {AUD}"}]
    assert len(a.render_music(two)) == 2
    with pytest.raises(ValueError, match="last message is the assistant"):
        a.render_music(REQUEST[:1])


def test_render_music_is_empty_without_music_output(tiny_llm_dir: Path) -> None:
    from conftest import tiny_model_dict

    plain = MusicLLM(load_model_config(tiny_model_dict(tiny_llm_dir)))
    assert plain.render_music(REQUEST) == [] and len(plain.outputs) == 0


def test_save_and_load_keep_rows_and_projector(tiny_llm_dir: Path, tiny_musicgen_dir: Path,
                                               tmp_path: Path) -> None:
    model = build(tiny_llm_dir, tiny_musicgen_dir).eval()
    _perturb(model.outputs["music"], seed=5, scale=0.2)   # as if trained
    batch = model.processor([REQUEST], [{}])
    logits = model(batch["input_ids"], batch["attention_mask"])["logits"]
    clip = model.render_music(REQUEST)[0].waveform
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "m" / "trainable.safetensors")))
    assert {"outputs.music.tokens.input_rows", "outputs.music.tokens.output_rows"} <= keys
    assert any(k.startswith("outputs.music.projector.") for k in keys)
    again = MusicLLM.from_pretrained(tmp_path / "m").eval()
    assert torch.equal(again(batch["input_ids"], batch["attention_mask"])["logits"], logits)
    assert np.array_equal(again.render_music(REQUEST)[0].waveform, clip)
    # What was loaded matters: the same config built fresh differs in both.
    fresh = build(tiny_llm_dir, tiny_musicgen_dir).eval()
    assert not torch.equal(fresh(batch["input_ids"], batch["attention_mask"])["logits"], logits)
    assert not np.array_equal(fresh.render_music(REQUEST)[0].waveform, clip)


def test_editing_conditions_on_the_earlier_clip_and_the_request(
        model: MusicLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    first = model.render_music(REQUEST)[0]
    decoder = model.outputs["music"].decoder
    given: list[torch.Tensor] = []
    original = decoder.generate_from_condition

    def spy(condition: torch.Tensor, *args: object) -> list[np.ndarray]:
        given.append(condition.clone())
        return original(condition, *args)

    monkeypatch.setattr(decoder, "generate_from_condition", spy)
    edit = [REQUEST[0], REQUEST[1],
            {"role": "user", "content": "<audio> Make it slower."},
            {"role": "assistant", "content": f"Here is a slower version. {AUD}"}]
    slower = model.render_music(edit, {"audio": [first]})
    assert len(slower) == 1 and slower[0].request == "<audio> Make it slower."
    # The generated clip reaches the encoder as audio input (resampled from 32 kHz) ...
    batch = model.processor([edit], [{"audio": [first]}])
    assert batch["media"]["audio"].values.shape[-1] == round(0.4 * 16000)
    # ... and the new clip depends on it and on the request.
    noise = GeneratedAudio(np.random.default_rng(0).uniform(-0.5, 0.5, 12800).astype(
        np.float32), 32000, "stand-in")
    other_clip = model.render_music(edit, {"audio": [noise]})
    faster = [*edit[:2], {"role": "user", "content": "<audio> Make it faster."}, edit[3]]
    assert len(model.render_music(faster, {"audio": [first]})) == 1
    # The decoder's conditioning depends on both; the tiny random MusicGen's greedy codes
    # follow a changed clip (its tokens differ a lot), not always one changed word.
    assert not torch.allclose(given[0], given[1]) and not torch.allclose(given[0], given[2])
    assert not np.array_equal(slower[0].waveform, other_clip[0].waveform)
    # Only the last reply's tokens make clips: the first turn's run is not rendered again.
    assert len(slower) == 1
