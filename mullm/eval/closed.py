"""Closed-question evaluation: does the model know the key, mode, tempo, metre, instrument?

Each held-out clip gets the fixed questions of ``mullm.data.templates.closed_questions`` (one
phrasing per attribute, the allowed answers listed). The model's answer is the allowed
answer with the highest log-probability as the assistant reply (summed over the answer's
tokens and the end-of-turn marker), so a model that cannot phrase an answer is still scored
on what it knows, and a free-form generation never has to be parsed.

Two references sit next to each accuracy:

* chance, both uniform (1 / number of choices) and the majority-class rate (always giving
  the most common answer of the evaluated clips);
* the noise control: the same clips replaced by Gaussian noise of the same RMS loudness,
  through the normal input path. Accuracy above noise is what the model takes from the
  audio; accuracy at the noise level comes from the question alone (priors on answers).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from mullm.model import MusicLLM

ATTRIBUTES = ("family", "mode", "tempo_class", "metre", "key")


@dataclass
class ClosedItem:
    """One question about one clip, with the allowed answers and the right one."""

    clip: str
    audio: str
    attribute: str
    question: str
    choices: list[str]
    answer: str


def closed_items(metadata: str | Path, split: str | None = "test",
                 attributes: tuple[str, ...] | list[str] = ATTRIBUTES,
                 max_clips: int | None = None) -> list[ClosedItem]:
    """Questions for the clips of ``metadata.jsonl`` in ``split`` (None: every clip)."""
    from mullm.data.templates import closed_questions

    metadata = Path(metadata)
    rows = [json.loads(x) for x in metadata.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if split is None or r.get("split") == split]
    if max_clips is not None:
        rows = rows[:max_clips]
    items = []
    for r in rows:
        audio = Path(r["audio"])
        audio = audio if audio.is_absolute() else metadata.parent / audio
        for q in closed_questions(r):
            if q["attribute"] in attributes:
                items.append(ClosedItem(r["id"], str(audio), q["attribute"], q["question"],
                                        list(q["choices"]), q["answer"]))
    if not items:
        raise ValueError(f"{metadata}: no clip in split {split!r} has a closed question for "
                         f"{list(attributes)}")
    return items


def noise_like(wave: torch.Tensor, seed: int) -> torch.Tensor:
    """Gaussian noise with the RMS loudness and length of ``wave``."""
    g = torch.Generator().manual_seed(seed)
    rms = wave.float().pow(2).mean().sqrt()
    return torch.randn(wave.shape, generator=g) * rms


def _question_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "<audio>\n" + question}]


@torch.no_grad()
def score_choices(model: MusicLLM, question: str, choices: list[str], audio: Any,
                  use_cache: bool = True, reduction: str = "sum") -> list[float]:
    """Log-probability of each choice as the assistant's reply to ``question``.

    ``reduction="sum"`` is the reply's log-likelihood, the right ranking for a model trained
    on these exact replies; ``"mean"`` (per token) favours choices with more, easily
    predicted tokens ("chromatic percussion" over "organ") and is kept for comparison.

    For spliced audio the shared prompt (system, audio tokens, question) runs once and its
    KV cache is repeated for the choices; other injections score each choice in full.
    """
    convs = [_question_messages(question) + [{"role": "assistant", "content": c}]
             for c in choices]
    media = [{"audio": [audio]} for _ in choices]
    batch = model.processor(convs, media)
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    device = model.device
    spliced_only = all(c.injection.kind == "splice" for c in model.config.modalities.values())
    if not (spliced_only and use_cache):
        out = model(ids, attn, labels=None, media=batch["media"], return_logits=True)
        logits, targets = out["logits"][:, :-1].float(), labels[:, 1:].to(device)
    else:
        labelled = labels != -100
        prefix = int(labelled.float().argmax(1).min())
        # The prompt is shared only while every row has the same tokens.
        while prefix > 1 and not bool((ids[:, :prefix] == ids[:1, :prefix]).all()):
            prefix -= 1
        one = model.processor.batch_media(
            "audio", [model.processor.load_item("audio", audio)], [0], ["clip"])
        embeds, states = model.prepare_inputs_embeds(ids[:1, :prefix], {"audio": one})
        with model.injection(states):
            out = model.llm(inputs_embeds=embeds, attention_mask=attn[:1, :prefix].to(device),
                            use_cache=True, logits_to_keep=1)
        # transformers 5 renamed past_key_values to cache; accept both.
        cache_arg = "cache" if hasattr(out, "cache") else "past_key_values"
        cache = getattr(out, cache_arg)
        cache.batch_repeat_interleave(len(choices))
        rest = model.llm(input_ids=ids[:, prefix:].to(device), attention_mask=attn.to(device),
                         use_cache=True, **{cache_arg: cache})
        logits = torch.cat([out.logits[:, -1:].expand(len(choices), 1, -1),
                            rest.logits[:, :-1]], 1).float()
        targets = labels[:, prefix:].to(device)
    mask = targets != -100
    logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    total = (logp * mask).sum(1)
    if reduction == "sum":
        return total.tolist()
    if reduction == "mean":
        return (total / mask.sum(1).clamp_min(1)).tolist()
    raise ValueError(f"reduction={reduction!r} is not one of 'sum', 'mean'")


@torch.no_grad()
def evaluate_closed(model: MusicLLM, items: list[ClosedItem], noise_control: bool = True,
                    seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accuracy per attribute, with chance (uniform, majority) and the noise control."""
    was = model.training
    model.eval()
    waves: dict[str, torch.Tensor] = {}
    rows = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items) * (2 if noise_control else 1), desc="closed questions",
                   unit="q")
    try:
        for it in items:
            if it.audio not in waves:
                waves[it.audio] = model.processor.load_item("audio", it.audio)
            wave = waves[it.audio]
            scores = score_choices(model, it.question, it.choices, wave)
            row = {**asdict(it), "scores": scores,
                   "predicted": it.choices[int(np.argmax(scores))]}
            if bar is not None:
                bar.update()
            if noise_control:
                clip_seed = seed * 1_000_003 + sorted(waves).index(it.audio)
                nscores = score_choices(model, it.question, it.choices,
                                        noise_like(wave, clip_seed))
                row["noise_predicted"] = it.choices[int(np.argmax(nscores))]
                if bar is not None:
                    bar.update()
            rows.append(row)
    finally:
        model.train(was)
        if bar is not None:
            bar.close()
    return summarize(rows, time.perf_counter() - t0)


def summarize(rows: list[dict[str, Any]], seconds: float = 0.0) -> dict[str, Any]:
    """Per-attribute accuracy, noise accuracy, uniform chance and majority-class rate."""
    table = {}
    for attr in sorted({r["attribute"] for r in rows}, key=lambda a: (
            ATTRIBUTES.index(a) if a in ATTRIBUTES else 99, a)):
        sub = [r for r in rows if r["attribute"] == attr]
        counts = Counter(r["answer"] for r in sub)
        entry = {
            "n": len(sub),
            "accuracy": sum(r["predicted"] == r["answer"] for r in sub) / len(sub),
            "chance_uniform": float(np.mean([1.0 / len(r["choices"]) for r in sub])),
            "majority_rate": counts.most_common(1)[0][1] / len(sub),
            "majority_answer": counts.most_common(1)[0][0],
        }
        if all("noise_predicted" in r for r in sub):
            entry["noise_accuracy"] = sum(r["noise_predicted"] == r["answer"]
                                          for r in sub) / len(sub)
        table[attr] = entry
    return {"attributes": table, "items": rows, "seconds": seconds}


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: attribute, n, accuracy, noise control, chance, majority."""
    head = f"{'attribute':<12} {'n':>4} {'model':>7} {'noise':>7} {'uniform':>8} {'majority':>9}"
    lines = [head, "-" * len(head)]
    for attr, e in result["attributes"].items():
        noise = f"{e['noise_accuracy']:.2f}" if "noise_accuracy" in e else "-"
        lines.append(f"{attr:<12} {e['n']:>4} {e['accuracy']:>7.2f} {noise:>7} "
                     f"{e['chance_uniform']:>8.2f} {e['majority_rate']:>9.2f}")
    return "\n".join(lines)
