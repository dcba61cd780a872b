"""Turn conversations plus media into model inputs: chat template, placeholder expansion,
labels on assistant turns only, padding, and batched media.

The convention is transformers' Qwen2-Audio / LLaVA one: each modality has one placeholder
token in the vocabulary; a ``<audio>`` marker in a message becomes that token, and the
processor repeats it exactly as many times as the adapter will emit tokens for that clip, so
the model can check the count before it splices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mullm.errors import DataError

if TYPE_CHECKING:
    from mullm.model import MusicLLM

IGNORE_INDEX = -100
MARKERS = {"audio": "<audio>", "image": "<image>", "video": "<video>"}


@dataclass
class MediaBatch:
    """The items of one modality in a batch, each tagged with the sample it belongs to.

    Either raw inputs (``values`` padded, ``lengths`` in samples / frames) or precomputed
    encoder features (``features`` (N, L, T, D) with ``frames`` valid per item).
    """

    sample_index: torch.Tensor
    values: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    features: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.sample_index.numel())

    def to(self, device: torch.device | str) -> MediaBatch:
        """Move tensors to ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return MediaBatch(mv(self.sample_index), mv(self.values), mv(self.lengths),
                          mv(self.features), mv(self.frames), self.names)


@dataclass
class Features:
    """Precomputed encoder output for one item: hidden states (L, T, D), all frames valid."""

    hidden_states: torch.Tensor
    name: str = "<features>"


def pad_stack(items: list[torch.Tensor], dim0: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad tensors along their first axis; returns (stacked, lengths)."""
    lengths = torch.tensor([t.shape[dim0] for t in items], dtype=torch.long)
    out = items[0].new_zeros((len(items), int(lengths.max()), *items[0].shape[1:]))
    for i, t in enumerate(items):
        out[i, : t.shape[0]] = t
    return out, lengths


class MusicProcessor:
    """Prepares batches for a ``MusicLLM``; ``model.processor`` is the instance to use."""

    def __init__(self, model: MusicLLM) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.placeholder_ids = model.placeholder_ids
        self.config = model.config

    # ------------------------------------------------------------------ media
    def load_item(self, modality: str, item: Any) -> torch.Tensor | Features:
        """A path, array or tensor -> a checked input tensor at the encoder's rate."""
        enc = self.model.encoders[modality]
        ecfg = self.config.modalities[modality].encoder
        if isinstance(item, Features):
            return item
        if isinstance(item, (str, Path)):
            if modality == "audio":
                from mullm.audio import load_audio

                wave = load_audio(item, enc.sample_rate, max_duration_s=ecfg.max_duration_s,
                                  min_duration_s=ecfg.min_duration_s)
                return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            if not hasattr(enc, "load"):
                raise ValueError(
                    f"{item}: the {ecfg.name!r} encoder takes {modality} tensors, not files"
                )
            values, _ = enc.load([item])
            return values[0]
        tensor = torch.as_tensor(np.asarray(item) if not torch.is_tensor(item) else item)
        return tensor.float()

    def num_tokens(self, modality: str, item: torch.Tensor | Features) -> int:
        """How many LLM tokens the adapter will emit for this item."""
        enc = self.model.encoders[modality]
        if isinstance(item, Features):
            frames = item.hidden_states.shape[1]
        elif modality == "audio":
            frames = enc.num_frames(int(item.shape[0]))
        elif item.dim() == 4:  # video: (frames, C, H, W)
            frames = enc.num_frames(int(item.shape[0]))
        else:
            frames = enc.num_frames(1)
        return self.model.adapters[modality].num_tokens(frames)

    def batch_media(self, modality: str, items: list[torch.Tensor | Features],
                    sample_index: list[int], names: list[str]) -> MediaBatch:
        """Stack one modality's items into a ``MediaBatch``."""
        idx = torch.tensor(sample_index, dtype=torch.long)
        if all(isinstance(x, Features) for x in items):
            feats = [x.hidden_states.transpose(0, 1) for x in items]  # (T, L, D)
            stacked, frames = pad_stack(feats)
            return MediaBatch(idx, features=stacked.transpose(1, 2), frames=frames, names=names)
        if any(isinstance(x, Features) for x in items):
            raise ValueError(f"{modality}: a batch mixes precomputed features and raw inputs")
        for i, x in enumerate(items):
            if x.numel() == 0:
                raise ValueError(f"sample {sample_index[i]}: empty {modality} input ({names[i]})")
            if not torch.isfinite(x).all():
                raise ValueError(
                    f"sample {sample_index[i]}: {modality} input {names[i]} contains NaN or inf"
                )
        if modality == "audio":
            for i, x in enumerate(items):
                if x.dim() != 1:
                    raise ValueError(
                        f"sample {sample_index[i]}: audio {names[i]} must be a 1-D waveform "
                        f"at {self.model.encoders['audio'].sample_rate} Hz, got shape "
                        f"{tuple(x.shape)}"
                    )
            values, lengths = pad_stack(items)
        elif items[0].dim() == 3:
            values = torch.stack(items)
            lengths = torch.ones(len(items), dtype=torch.long)
        else:
            values, lengths = pad_stack(items)
        return MediaBatch(idx, values=values, lengths=lengths, names=names)

    # ------------------------------------------------------------------ text
    def _injects_tokens(self, modality: str) -> bool:
        return self.config.modalities[modality].injection.kind == "splice"

    def _prepare_messages(self, messages: list[dict], counts: dict[str, int], sample: int
                          ) -> list[dict]:
        msgs = [dict(m) for m in messages]
        for m in msgs:
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"sample {sample}: unknown role {m.get('role')!r}")
            if not isinstance(m.get("content"), str):
                raise ValueError(f"sample {sample}: message content must be a string")
        if self.config.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.config.system_prompt})
        for modality, n in counts.items():
            marker = MARKERS[modality]
            found = sum(m["content"].count(marker) for m in msgs)
            if found == 0 and n:
                first_user = next((m for m in msgs if m["role"] == "user"), None)
                if first_user is None:
                    raise ValueError(f"sample {sample}: {n} {modality} item(s) but no user turn")
                first_user["content"] = (marker + "\n") * n + first_user["content"]
            elif found != n:
                raise ValueError(
                    f"sample {sample}: {found} {marker} marker(s) in the text but {n} "
                    f"{modality} item(s); give one item per marker (or no markers at all)"
                )
            if not self._injects_tokens(modality):
                for m in msgs:
                    m["content"] = re.sub(re.escape(marker) + r"\n?", "", m["content"])
        for modality, marker in MARKERS.items():
            if modality not in counts and any(marker in m["content"] for m in msgs):
                if modality not in self.config.modalities:
                    raise ValueError(
                        f"sample {sample}: the text has {marker} but the model has no "
                        f"{modality} modality"
                    )
                raise ValueError(f"sample {sample}: the text has {marker} but no {modality} item")
        return msgs

    def _render(self, msgs: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _assistant_spans(self, msgs: list[dict], full: str) -> list[tuple[int, int]]:
        """Character spans of assistant replies, found by rendering growing prefixes."""
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before = self._render(msgs[:i], add_generation_prompt=True)
            upto = self._render(msgs[: i + 1], add_generation_prompt=False)
            if not full.startswith(before) or not full.startswith(upto.rstrip()):
                raise ValueError(
                    "the chat template does not render conversations prefix-consistently; "
                    "set llm.chat_template to one that does"
                )
            # Train on the reply and its end-of-turn marker, not on trailing whitespace.
            spans.append((len(before), len(upto.rstrip())))
        return spans

    def encode_conversation(self, messages: list[dict], counts: dict[str, int],
                            token_counts: dict[str, list[int]], sample: int,
                            add_generation_prompt: bool) -> tuple[list[int], list[int]]:
        """One sample -> (input_ids, labels) with placeholders expanded."""
        msgs = self._prepare_messages(messages, counts, sample)
        has_reply = msgs[-1]["role"] == "assistant"
        full = self._render(msgs, add_generation_prompt=add_generation_prompt and not has_reply)
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        spans = self._assistant_spans(msgs, full) if not add_generation_prompt else []
        labels = []
        for tid, (a, _) in zip(ids, offsets):
            inside = any(s <= a < e for s, e in spans)
            labels.append(tid if inside else IGNORE_INDEX)
        out_ids: list[int] = []
        out_labels: list[int] = []
        seen = {m: 0 for m in token_counts}
        by_id = {v: k for k, v in self.placeholder_ids.items()}
        for tid, lab in zip(ids, labels):
            modality = by_id.get(tid)
            if modality is None:
                out_ids.append(tid)
                out_labels.append(lab)
                continue
            k = seen[modality]
            n = token_counts[modality][k]
            seen[modality] += 1
            out_ids.extend([tid] * n)
            out_labels.extend([IGNORE_INDEX] * n)
        for modality, n_items in seen.items():
            if n_items != len(token_counts[modality]):
                raise ValueError(
                    f"sample {sample}: the tokenizer produced {n_items} {modality} placeholders "
                    f"for {len(token_counts[modality])} items"
                )
        return out_ids, out_labels

    def __call__(self, conversations: list[list[dict]], media: list[dict[str, list]] | None = None,
                 add_generation_prompt: bool = False, padding_side: str = "right",
                 max_length: int | None = None) -> dict[str, Any]:
        """Build a batch: ``conversations[b]`` is a list of messages, ``media[b]`` maps a
        modality to that sample's items (paths, waveforms, ``Features``)."""
        media = media if media is not None else [{} for _ in conversations]
        if len(media) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(media)} media entries")
        all_items: dict[str, list] = {}
        all_index: dict[str, list[int]] = {}
        all_names: dict[str, list[str]] = {}
        rows_ids, rows_labels = [], []
        for b, (msgs, med) in enumerate(zip(conversations, media)):
            counts, token_counts = {}, {}
            for modality, items in (med or {}).items():
                if modality not in self.config.modalities:
                    raise ValueError(
                        f"sample {b}: the model has no {modality!r} modality "
                        f"(it has {sorted(self.config.modalities)})"
                    )
                items = list(items)
                limit = self.config.modalities[modality].max_items
                if len(items) > limit:
                    raise ValueError(
                        f"sample {b}: {len(items)} {modality} items exceed max_items={limit}"
                    )
                loaded = [self.load_item(modality, x) for x in items]
                counts[modality] = len(loaded)
                token_counts[modality] = [self.num_tokens(modality, x) for x in loaded]
                all_items.setdefault(modality, []).extend(loaded)
                all_index.setdefault(modality, []).extend([b] * len(loaded))
                all_names.setdefault(modality, []).extend(
                    str(x) if isinstance(x, (str, Path)) else getattr(x, "name", f"item{i}")
                    for i, x in enumerate(items))
            ids, labels = self.encode_conversation(
                msgs, counts, {m: c for m, c in token_counts.items() if self._injects_tokens(m)},
                b, add_generation_prompt)
            if max_length is not None and len(ids) > max_length:
                ids, labels = self._truncate(ids, labels, max_length, b)
            rows_ids.append(ids)
            rows_labels.append(labels)
        batch = self.pad(rows_ids, rows_labels, padding_side)
        batch["media"] = {
            m: self.batch_media(m, all_items[m], all_index[m], all_names[m]) for m in all_items
        }
        if add_generation_prompt:
            batch.pop("labels")
        return batch

    def _truncate(self, ids: list[int], labels: list[int], max_length: int, sample: int
                  ) -> tuple[list[int], list[int]]:
        """Cut trailing text; never cut through (or drop) a placeholder run."""
        placeholder = set(self.placeholder_ids.values())
        last = max((i for i, t in enumerate(ids) if t in placeholder), default=-1)
        if last >= max_length:
            raise DataError(
                f"sample {sample}: {len(ids)} tokens exceed max_length={max_length} and the "
                f"cut would fall inside media tokens (last one at position {last}); raise "
                f"max_length or use fewer/shorter clips"
            )
        return ids[:max_length], labels[:max_length]

    def pad(self, rows_ids: list[list[int]], rows_labels: list[list[int]], padding_side: str
            ) -> dict[str, torch.Tensor]:
        """Dynamic padding to the longest row, on the given side."""
        pad_id = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows_ids)
        B = len(rows_ids)
        input_ids = torch.full((B, width), pad_id, dtype=torch.long)
        labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((B, width), dtype=torch.long)
        for b, (ids, labs) in enumerate(zip(rows_ids, rows_labels)):
            n = len(ids)
            sl = slice(width - n, width) if padding_side == "left" else slice(0, n)
            input_ids[b, sl] = torch.tensor(ids)
            labels[b, sl] = torch.tensor(labs)
            attention[b, sl] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
