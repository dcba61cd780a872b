"""The processor: conversations plus media -> model inputs, without the model.

It follows transformers' Qwen2-Audio / LLaVA convention and is a ``ProcessorMixin``: built
from a tokenizer and, per modality, a ``MediaSpec`` (plain data derived from the model config
and its encoders' resolved rates), saved with ``save_pretrained`` into a model directory and
loaded with ``MusicProcessor.from_pretrained``. It holds no reference to the model, so a
training collator pickles to the size of the tokenizer, not the LLM.

Each spliced modality has one placeholder token in the vocabulary; a ``<audio>`` marker in a
message becomes that token, repeated exactly as many times as the adapter will emit tokens for
that clip (counted from the frame spec and the adapter settings), so the model can check the
count before it splices. Labels are the assistant replies (and their end-of-turn marker) only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from transformers import ProcessorMixin

from mullm.errors import DataError
from mullm.media import MARKERS, Features, MediaBatch, MediaSpec

IGNORE_INDEX = -100


class MusicBatch(dict):
    """The processor's output: ``input_ids`` (B, S), ``attention_mask`` (B, S), ``labels``
    (B, S; training only) and ``media`` {modality: MediaBatch}, so that ``model(**batch)`` and
    ``model.generate(**batch)`` take it as it is.

    Attributes (not keys, so they never reach the model): ``truncated_label_tokens``, the
    labelled tokens that ``max_length`` cut, and ``dropped``, the indices of input samples
    left out because the cut took their whole answer.
    """

    truncated_label_tokens: int = 0
    dropped: tuple[int, ...] = ()

    def to(self, device: torch.device | str) -> MusicBatch:
        """A copy with every tensor (and media batch) on ``device``."""
        out = MusicBatch({k: v.to(device) if torch.is_tensor(v) else v
                          for k, v in self.items()})
        out["media"] = {m: b.to(device) for m, b in self.get("media", {}).items()}
        out.truncated_label_tokens, out.dropped = self.truncated_label_tokens, self.dropped
        return out


class MusicProcessor(ProcessorMixin):
    """Chat template, placeholder expansion, labels, truncation, padding and media batching.

    Args:
        tokenizer: the LLM's tokenizer, with a chat template and a placeholder token for each
            spliced modality (``from_model_config`` adds them).
        media: {modality name: ``MediaSpec`` or its ``to_dict()``}.
        system_prompt: put before every conversation that has no system turn.
        chat_template: unused by mullm (the tokenizer's template is used); kept for the
            ``ProcessorMixin`` interface.

    Raises:
        ValueError: a spliced modality whose placeholder is not one token of the vocabulary.
    """

    def __init__(self, tokenizer: Any, media: dict[str, Any] | None = None,
                 system_prompt: str | None = None, chat_template: str | None = None) -> None:
        super().__init__(tokenizer, chat_template=chat_template)
        self.media = {name: spec.to_dict() if isinstance(spec, MediaSpec) else dict(spec)
                      for name, spec in (media or {}).items()}
        self.system_prompt = system_prompt
        self.specs = {name: MediaSpec.from_dict(d) for name, d in self.media.items()}
        unknown = sorted(set(self.specs) - set(MARKERS))
        if unknown:
            raise ValueError(f"media: unknown modality name(s) {unknown}; known: "
                             f"{sorted(MARKERS)}")
        self.placeholder_ids: dict[str, int] = {}
        for name, spec in self.specs.items():
            if not spec.splices:
                continue
            ids = tokenizer.encode(MARKERS[name], add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(
                    f"the tokenizer splits the {name} placeholder {MARKERS[name]!r} into "
                    f"{len(ids)} tokens; build the processor with "
                    "MusicProcessor.from_model_config, which adds it as a special token")
            self.placeholder_ids[name] = ids[0]

    # ------------------------------------------------------------------ saving, pickling
    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> list[str]:
        """Write the tokenizer, ``processor_config.json`` (the media specs, the system prompt)
        and the chat template to a folder ``from_pretrained`` reads; afterwards this
        processor pickles as a reference to that folder."""
        files = super().save_pretrained(str(save_directory), **kwargs)
        self._source = (str(Path(save_directory).resolve()), self._identity())
        return files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path,
                        **kwargs: Any) -> MusicProcessor:
        """Load a processor saved by ``save_pretrained`` (or a model directory's
        ``processor/``); it pickles as a reference to that folder."""
        proc = super().from_pretrained(str(pretrained_model_name_or_path), **kwargs)
        if Path(pretrained_model_name_or_path).is_dir():
            proc._source = (str(Path(pretrained_model_name_or_path).resolve()),
                            proc._identity())
        return proc

    def _identity(self) -> tuple[int, str]:
        import json

        return len(self.tokenizer), json.dumps([self.media, self.system_prompt],
                                               sort_keys=True)

    def __reduce__(self) -> tuple:
        # A processor with a folder pickles as (folder, identity): kilobytes instead of the
        # tokenizer's megabytes, for every DataLoader worker and process.
        source = getattr(self, "_source", None)
        if source is None or not Path(source[0]).is_dir():
            return super().__reduce__()
        return _from_saved, source

    @classmethod
    def from_model_config(cls, config: Any, tokenizer: Any = None,
                          encoders: dict[str, Any] | None = None) -> MusicProcessor:
        """Build from a ``ModelConfig``: the LLM's tokenizer (loaded when not given), with a
        special token added per spliced modality (and, with a ``music_output`` section, the
        output tokens ``[AUD0]..``), and one ``MediaSpec`` per modality.

        ``encoders`` are built encoders to read resolved rates from (the model passes its
        own); without them each encoder is built once to read them (cheap for the spectral
        and tiny encoders, a weight load for pretrained ones; a saved model directory's
        processor needs none: use ``from_pretrained``).
        """
        if tokenizer is None:
            from mullm.llm import load_tokenizer

            tokenizer = load_tokenizer(config.llm)
        specs = {}
        for name, mcfg in config.modalities.items():
            enc = (encoders or {}).get(name)
            if enc is None:
                from mullm.encoders import build_encoder

                enc = build_encoder(mcfg.encoder)
            specs[name] = MediaSpec.from_encoder(mcfg, enc)
        new = [MARKERS[n] for n, s in specs.items() if s.splices]
        if new:
            tokenizer.add_special_tokens({"additional_special_tokens": new},
                                         replace_extra_special_tokens=False)
        music = getattr(config, "music_output", None)
        if music is not None:
            # M2UGen's output tokens, after the placeholders: ordinary added tokens, so that
            # decoded replies keep them (mullm.outputs.tokens).
            from mullm.outputs.vocab import add_output_tokens

            add_output_tokens(tokenizer, music.num_tokens)
        return cls(tokenizer, media=specs, system_prompt=config.system_prompt)

    # ------------------------------------------------------------------ media
    def spec(self, modality: str) -> MediaSpec:
        """The ``MediaSpec`` of ``modality``; ValueError naming the ones there are."""
        if modality not in self.specs:
            raise ValueError(f"the model has no {modality!r} modality (it has "
                             f"{sorted(self.specs)})")
        return self.specs[modality]

    def load_item(self, modality: str, item: Any) -> torch.Tensor | Features:
        """A path, array or tensor -> a checked input at the encoder's rate."""
        return self.spec(modality).load_item(item)

    def num_tokens(self, modality: str, item: torch.Tensor | Features) -> int:
        """How many LLM tokens the adapter will emit for a loaded item."""
        return self.spec(modality).num_tokens(item)

    def batch_media(self, modality: str, items: list[torch.Tensor | Features],
                    sample_index: list[int], names: list[str]) -> MediaBatch:
        """Stack one modality's loaded items into a ``MediaBatch``."""
        return self.spec(modality).batch(modality, items, sample_index, names)

    # ------------------------------------------------------------------ text
    def _prepare_messages(self, messages: list[dict], counts: dict[str, int], sample: int
                          ) -> list[dict]:
        msgs = [dict(m) for m in messages]
        for m in msgs:
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"sample {sample}: unknown role {m.get('role')!r}")
            if not isinstance(m.get("content"), str):
                raise ValueError(f"sample {sample}: message content must be a string")
        if self.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
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
            if not self.specs[modality].splices:
                for m in msgs:
                    m["content"] = re.sub(re.escape(marker) + r"\n?", "", m["content"])
        for modality, marker in MARKERS.items():
            if modality not in counts and any(marker in m["content"] for m in msgs):
                if modality not in self.specs:
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
        by_id = {v: k for k, v in self.placeholder_ids.items()}
        seen = {m: 0 for m in token_counts}
        out_ids: list[int] = []
        out_labels: list[int] = []
        for tid, (a, _) in zip(ids, offsets):
            modality = by_id.get(tid)
            if modality is None:
                out_ids.append(tid)
                out_labels.append(tid if any(s <= a < e for s, e in spans) else IGNORE_INDEX)
                continue
            n = token_counts[modality][seen[modality]]
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
                 max_length: int | None = None) -> MusicBatch:
        """Build a batch.

        Args:
            conversations: ``conversations[b]`` is a list of {"role", "content"} messages.
            media: ``media[b]`` maps a modality to that sample's items (paths, waveforms,
                image tensors or ``Features``), in marker order.
            add_generation_prompt: end each sample with the assistant prompt (generation);
                no labels are returned then.
            padding_side: "right" (training) or "left" (generation).
            max_length: cut longer samples' trailing text (never through media tokens).
                Labelled tokens that are cut are counted in ``truncated_label_tokens``; a
                sample whose whole answer is cut is left out (``dropped``) unless that would
                leave the batch empty.

        Raises:
            ValueError: markers and items that do not match, unknown modalities or roles,
                too many items; ``DataError`` when a cut would fall inside media tokens.
        """
        media = media if media is not None else [{} for _ in conversations]
        if len(media) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(media)} media entries")
        rows = []
        for b, (msgs, med) in enumerate(zip(conversations, media)):
            loaded: dict[str, list] = {}
            names: dict[str, list[str]] = {}
            for modality, items in (med or {}).items():
                spec = self.spec(modality)
                items = list(items)
                if len(items) > spec.max_items:
                    raise ValueError(f"sample {b}: {len(items)} {modality} items exceed "
                                     f"max_items={spec.max_items}")
                loaded[modality] = [spec.load_item(x) for x in items]
                names[modality] = [str(x) if isinstance(x, (str, Path))
                                   else getattr(x, "name", f"item{i}")
                                   for i, x in enumerate(items)]
            token_counts = {m: [self.specs[m].num_tokens(x) for x in xs]
                            for m, xs in loaded.items() if self.specs[m].splices}
            ids, labels = self.encode_conversation(
                msgs, {m: len(xs) for m, xs in loaded.items()}, token_counts, b,
                add_generation_prompt)
            cut = 0
            if max_length is not None and len(ids) > max_length:
                ids, labels, cut = self._truncate(ids, labels, max_length, b)
            rows.append((b, ids, labels, cut, loaded, names))
        cut_total = sum(r[3] for r in rows)
        emptied = [r[0] for r in rows
                   if r[3] and all(x == IGNORE_INDEX for x in r[2])]
        if emptied and len(emptied) < len(rows):
            rows = [r for r in rows if r[0] not in emptied]
        else:
            emptied = []
        batch = self.pad([r[1] for r in rows], [r[2] for r in rows], padding_side)
        items: dict[str, list] = {}
        index: dict[str, list[int]] = {}
        item_names: dict[str, list[str]] = {}
        for row, (_, _, _, _, loaded, names) in enumerate(rows):
            for modality, xs in loaded.items():
                items.setdefault(modality, []).extend(xs)
                index.setdefault(modality, []).extend([row] * len(xs))
                item_names.setdefault(modality, []).extend(names[modality])
        batch["media"] = {m: self.batch_media(m, items[m], index[m], item_names[m])
                          for m in items}
        # Counted over every input sample, the dropped ones included.
        batch.truncated_label_tokens = cut_total
        batch.dropped = tuple(emptied)
        if add_generation_prompt:
            batch.pop("labels")
        return batch

    def _truncate(self, ids: list[int], labels: list[int], max_length: int, sample: int
                  ) -> tuple[list[int], list[int], int]:
        """Cut trailing text, never through (or dropping) a placeholder run; returns the kept
        ids and labels and how many labelled tokens were cut."""
        placeholder = set(self.placeholder_ids.values())
        last = max((i for i, t in enumerate(ids) if t in placeholder), default=-1)
        if last >= max_length:
            raise DataError(
                f"sample {sample}: {len(ids)} tokens exceed max_length={max_length} and the "
                f"cut would fall inside media tokens (last one at position {last}); raise "
                f"max_length or use fewer/shorter clips"
            )
        cut = sum(1 for x in labels[max_length:] if x != IGNORE_INDEX)
        return ids[:max_length], labels[:max_length], cut

    def pad(self, rows_ids: list[list[int]], rows_labels: list[list[int]], padding_side: str
            ) -> MusicBatch:
        """Dynamic padding to the longest row, on the given side."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={padding_side!r}: choose 'left' or 'right'")
        pad_id = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows_ids)
        B = len(rows_ids)
        input_ids = torch.full((B, width), pad_id, dtype=torch.long)
        labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((B, width), dtype=torch.long)
        for b, (ids, labs) in enumerate(zip(rows_ids, rows_labels)):
            n = len(ids)
            sl = slice(width - n, width) if padding_side == "left" else slice(0, n)
            input_ids[b, sl] = torch.tensor(ids, dtype=torch.long)
            labels[b, sl] = torch.tensor(labs, dtype=torch.long)
            attention[b, sl] = 1
        return MusicBatch(input_ids=input_ids, attention_mask=attention, labels=labels)


def _from_saved(folder: str, identity: tuple[int, str]) -> MusicProcessor:
    """Unpickle a processor by loading its folder, refusing one that changed since."""
    proc = MusicProcessor.from_pretrained(folder)
    if proc._identity() != tuple(identity):
        raise RuntimeError(f"{folder}: the saved processor changed after this one was "
                           "pickled (other tokenizer or media specs)")
    return proc


__all__ = ["IGNORE_INDEX", "MARKERS", "Features", "MediaBatch", "MusicBatch", "MusicProcessor"]
