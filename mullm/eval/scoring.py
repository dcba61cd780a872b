"""Batched scoring of many questions at once: option log-probabilities and generated replies.

``score_options`` ranks the options of a batch of questions by the log-probability of each
option's text as the assistant's reply (summed over its tokens and the end-of-turn marker,
as ``mullm.eval.closed.score_choices`` does for one question). For spliced audio the
prompts of the batch (system, audio tokens, question) run once, left-padded, and each
prompt's KV cache is gathered for its options, so a prompt is never recomputed per option;
other injections (xattn, prefix) score every option row in full. Positions follow the
attention mask, so a left-padded prompt gets the same positions it gets alone: batched and
one-at-a-time scores agree to float rounding.

``generate_replies`` is one batched, greedy ``model.generate`` call for a batch of prompts.

A *prompt* here is ``(messages, media)``: the conversation up to the last user turn (its
``<audio>`` marker present exactly when ``media`` holds a clip) and ``{"audio": [wave]}``
or ``{}``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mullm.model import MusicLLM

Prompt = tuple[list[dict[str, str]], dict[str, list[Any]]]
# Most logits (rows x positions x vocabulary) materialised at once, to bound memory.
_MAX_LOGITS = 64 * 1024 * 1024


def _item_rows(model: MusicLLM, prompt: Prompt, options: list[str]
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token ids and labels (C, S) of one prompt with each option as the reply, and the
    length of the prefix the rows share (everything before the first reply token)."""
    messages, media = prompt
    convs = [messages + [{"role": "assistant", "content": o}] for o in options]
    batch = model.processor(convs, [media] * len(options))
    ids, labels = batch["input_ids"], batch["labels"]
    lengths = batch["attention_mask"].sum(1)
    first = int((labels != -100).float().argmax(1).min())
    # The prompt is shared only while every row has the same tokens.
    while first > 1 and not bool((ids[:, :first] == ids[:1, :first]).all()):
        first -= 1
    rows = [ids[c, :int(lengths[c])] for c in range(len(options))]
    labs = [labels[c, :int(lengths[c])] for c in range(len(options))]
    width = max(len(r) for r in rows)
    pad = model.tokenizer.pad_token_id or 0
    out_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    out_lab = torch.full((len(rows), width), -100, dtype=torch.long)
    for c, (r, lab) in enumerate(zip(rows, labs)):
        out_ids[c, :len(r)] = r
        out_lab[c, :len(r)] = lab
    return out_ids, out_lab, first


def _spliced_only(model: MusicLLM) -> bool:
    return all(c.injection.kind == "splice" for c in model.config.modalities.values())


def _media_batch(model: MusicLLM, media: list[dict[str, list[Any]]]) -> dict[str, Any]:
    """A processor ``MediaBatch`` per modality for rows that hold items (sample index =
    row)."""
    out: dict[str, Any] = {}
    for modality in model.config.modalities:
        items, index = [], []
        for row, m in enumerate(media):
            for it in m.get(modality, []):
                items.append(model.processor.load_item(modality, it))
                index.append(row)
        if items:
            out[modality] = model.processor.batch_media(
                modality, items, index, [f"row {i}" for i in index])
    return out


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over labelled positions of log p(target): logits (R, L, V), targets (R, L)."""
    mask = targets != -100
    logp = torch.log_softmax(logits.float(), -1).gather(
        -1, targets.clamp_min(0)[..., None])[..., 0]
    return (logp * mask).sum(1)


@torch.no_grad()
def score_options(model: MusicLLM, prompts: list[Prompt], options: list[list[str]],
                  use_cache: bool = True) -> list[list[float]]:
    """Log-probability of every option of every prompt as the assistant's reply.

    Args:
        model: the model (its mode is left as it is; call it in eval mode).
        prompts: ``(messages, media)`` per question.
        options: the option texts per question (any number each, >= 1).
        use_cache: share each prompt's KV cache across its options (spliced models only).

    Returns:
        One list of floats (nats, summed over the reply's tokens) per question.

    Raises:
        ValueError: ``prompts`` and ``options`` differ in length, or inputs the processor
            refuses (marker and media mismatch, audio too long).
    """
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    if not prompts:
        return []
    rows = [_item_rows(model, p, o) for p, o in zip(prompts, options)]
    if not (use_cache and _spliced_only(model)):
        return _score_full(model, prompts, rows)
    return _score_cached(model, prompts, rows)


def _score_full(model: MusicLLM, prompts: list[Prompt],
                rows: list[tuple[torch.Tensor, torch.Tensor, int]]) -> list[list[float]]:
    """Every option row in full (xattn / prefix injection, or no cache sharing)."""
    device = model.device
    flat = [(i, c) for i, (ids, _, _) in enumerate(rows) for c in range(ids.shape[0])]
    vocab = model.llm.get_output_embeddings().weight.shape[0]
    out: list[list[float]] = [[0.0] * r[0].shape[0] for r in rows]
    start = 0
    while start < len(flat):
        width = max(rows[i][0].shape[1] for i, _ in flat[start:])
        step = max(1, _MAX_LOGITS // (width * vocab))
        chunk = flat[start:start + step]
        width = max(rows[i][0].shape[1] for i, _ in chunk)
        ids = torch.full((len(chunk), width), model.tokenizer.pad_token_id or 0)
        labels = torch.full((len(chunk), width), -100)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, c) in enumerate(chunk):
            # A row ends with its last labelled token (the reply's end-of-turn marker).
            lab = rows[i][1][c]
            end = int((lab != -100).nonzero().max()) + 1
            ids[r, :end] = rows[i][0][c, :end]
            labels[r, :end] = lab[:end]
            attn[r, :end] = 1
        media = _media_batch(model, [prompts[i][1] for i, _ in chunk])
        logits = model(ids, attn, media=media, return_logits=True)["logits"]
        total = _token_logprobs(logits[:, :-1], labels[:, 1:].to(device))
        for r, (i, c) in enumerate(chunk):
            out[i][c] = float(total[r])
        start += len(chunk)
    return out


def _score_cached(model: MusicLLM, prompts: list[Prompt],
                  rows: list[tuple[torch.Tensor, torch.Tensor, int]]) -> list[list[float]]:
    """Prompts once (left-padded), then every option from its prompt's KV cache."""
    device = model.device
    pad = model.tokenizer.pad_token_id or 0
    prefix = [r[2] for r in rows]
    width = max(prefix)
    p_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    p_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, _, n) in enumerate(rows):
        p_ids[i, width - n:] = ids[0, :n]
        p_mask[i, width - n:] = 1
    p_mask = p_mask.to(device)
    positions = (p_mask.cumsum(-1) - 1).clamp(min=0)
    embeds, states = model.prepare_inputs_embeds(p_ids, _media_batch(model, [p[1] for p in
                                                                            prompts]))
    with model.injection(states):
        first = model.llm(inputs_embeds=embeds, attention_mask=p_mask, position_ids=positions,
                          use_cache=True, logits_to_keep=1)
    # transformers 5 renamed past_key_values to cache; accept both.
    cache_arg = "cache" if hasattr(first, "cache") else "past_key_values"
    base_cache = getattr(first, cache_arg)
    last_logits = first.logits[:, -1]  # (B, V): predicts each reply's first token

    flat = [(i, c) for i, (ids, _, _) in enumerate(rows) for c in range(ids.shape[0])]
    out: list[list[float]] = [[0.0] * r[0].shape[0] for r in rows]
    vocab = last_logits.shape[-1]
    start = 0
    while start < len(flat):
        cont_w = max(rows[i][0].shape[1] - prefix[i] for i, _ in flat[start:])
        step = max(1, _MAX_LOGITS // (max(cont_w, 1) * vocab))
        chunk = flat[start:start + step]
        owners = torch.tensor([i for i, _ in chunk], device=device)
        cont_w = max(rows[i][0].shape[1] - prefix[i] for i, _ in chunk)
        c_ids = torch.full((len(chunk), cont_w), pad, dtype=torch.long)
        c_lab = torch.full((len(chunk), cont_w), -100, dtype=torch.long)
        c_mask = torch.zeros((len(chunk), cont_w), dtype=torch.long)
        for r, (i, c) in enumerate(chunk):
            ids, labels, n = rows[i]
            lab = labels[c, n:]
            valid = lab != -100
            end = int(valid.nonzero().max()) + 1 if bool(valid.any()) else 0
            c_ids[r, :end] = ids[c, n:n + end]
            c_lab[r, :end] = lab[:end]
            c_mask[r, :end] = 1
        cache = copy.deepcopy(base_cache)
        cache.batch_select_indices(owners)
        c_mask = c_mask.to(device)
        mask = torch.cat([p_mask[owners], c_mask], 1)
        pos = positions[owners, -1:] + 1 + torch.arange(cont_w, device=device)[None]
        with model.injection(states):
            rest = model.llm(input_ids=c_ids.to(device), attention_mask=mask, position_ids=pos,
                             use_cache=True, **{cache_arg: cache})
        logits = torch.cat([last_logits[owners][:, None], rest.logits[:, :-1]], 1)
        total = _token_logprobs(logits, c_lab.to(device))
        for r, (i, c) in enumerate(chunk):
            out[i][c] = float(total[r])
        start += len(chunk)
    return out


@torch.no_grad()
def generate_replies(model: MusicLLM, prompts: list[Prompt], max_new_tokens: int = 32
                     ) -> list[str]:
    """Greedy replies to a batch of prompts (one left-padded ``model.generate`` call).

    Raises:
        ValueError: inputs the processor or the model refuse (a prompt past the context).
    """
    from transformers import GenerationConfig

    if not prompts:
        return []
    batch = model.processor([p[0] for p in prompts], [p[1] for p in prompts],
                            add_generation_prompt=True, padding_side="left")
    gc = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    ids = model.generate(**batch, generation_config=gc)
    return [t.strip() for t in model.tokenizer.batch_decode(ids, skip_special_tokens=True)]


__all__ = ["Prompt", "generate_replies", "score_options"]
