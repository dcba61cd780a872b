"""M2UGen's output tokens ``[AUD0]..[AUDn-1]``: names, trainable embedding rows, finding them.

The tokens are added to the tokenizer as ordinary added tokens (``tokenizer.add_tokens``, as
M2UGen does), not as special tokens, so they survive ``decode(skip_special_tokens=True)`` and
a generated reply still carries them to ``MusicLLM.render_music``. Unlike the media
placeholders, the model may generate them: that is how it asks for music.

Their embedding rows are trainable without unfreezing the LLM's embedding matrices:
``OutputTokenRows`` holds an input row and an output row per token as its own parameters and
hooks the LLM's input embedding (the embedding of an output token is its input row) and output
head (the logit of an output token is the hidden state times its output row). So a stage can
train the n new rows alone, AdamW never touches (or decays) the frozen vocabulary, and the rows
are saved with the model's other trainable tensors. For an LLM with tied embeddings the two
rows start equal and are trained apart (only these n tokens are untied).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

TOKEN_FORMAT = "[AUD{i}]"


def output_token_names(num_tokens: int) -> list[str]:
    """``["[AUD0]", ..., "[AUD{n-1}]"]``."""
    return [TOKEN_FORMAT.format(i=i) for i in range(num_tokens)]


def output_token_text(num_tokens: int) -> str:
    """The run of output tokens as it appears in a reply: ``"[AUD0][AUD1]..."``."""
    return "".join(output_token_names(num_tokens))


_RUN = re.compile(r"\s*(?:\[AUD\d+\])+")


def strip_output_tokens(text: str) -> str:
    """``text`` without any output tokens (for showing a reply, or prompting with it)."""
    return _RUN.sub("", text).strip()


def add_output_tokens(tokenizer: Any, num_tokens: int) -> list[int]:
    """Add the output tokens to ``tokenizer`` (those it lacks) and return their ids in order.

    Raises:
        ValueError: a token that the tokenizer does not keep as one id (a tokenizer that
            normalises added tokens away).
    """
    names = output_token_names(num_tokens)
    missing = [n for n in names if n not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    ids = []
    for name in names:
        enc = tokenizer.encode(name, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"the tokenizer splits the output token {name!r} into {enc}; it "
                             "must be one token")
        ids.append(enc[0])
    return ids


def apply_task_prefix(messages: list[dict], prefix: str | None) -> list[dict]:
    """A copy of ``messages`` with ``prefix`` (and a space) before the first user message;
    unchanged when ``prefix`` is None or empty."""
    out = [dict(m) for m in messages]
    if not prefix:
        return out
    for m in out:
        if m.get("role") == "user":
            m["content"] = f"{prefix} {m['content']}"
            break
    return out


def task_prefixes(music_output: Any) -> tuple[str | None, str | None] | None:
    """(generation, understanding) prefixes of a ``music_output`` config section, for
    ``ConversationDataset(task_prefixes=...)``; None without music output."""
    if music_output is None:
        return None
    return music_output.generation_prefix, music_output.understanding_prefix


def find_output_runs(input_ids: torch.Tensor, token_ids: Sequence[int]) -> list[int]:
    """Start positions of every complete run ``token_ids[0], ..., token_ids[n-1]`` in one
    sequence ``input_ids`` (S,), in order."""
    n = len(token_ids)
    ids = input_ids.tolist()
    want = list(token_ids)
    return [s for s in range(len(ids) - n + 1) if ids[s] == want[0] and ids[s:s + n] == want]


class OutputTokenRows(nn.Module):
    """Trainable input and output embedding rows of the output tokens, applied by hooks.

    Args:
        token_ids: the tokens' vocabulary ids, in order.
        input_rows: (n, d) starting input rows (the LLM's rows for those ids).
        output_rows: (n, d) starting output rows.
    """

    def __init__(self, token_ids: Sequence[int], input_rows: torch.Tensor,
                 output_rows: torch.Tensor) -> None:
        super().__init__()
        self.token_ids = [int(i) for i in token_ids]
        self.input_rows = nn.Parameter(input_rows.detach().clone().float())
        self.output_rows = nn.Parameter(output_rows.detach().clone().float())
        self.register_buffer("ids", torch.tensor(self.token_ids, dtype=torch.long),
                             persistent=False)

    def attach(self, llm: nn.Module) -> list[Any]:
        """Hook ``llm``'s input embedding and output head; returns the hook handles."""
        handles = [llm.get_input_embeddings().register_forward_hook(self._embed_hook)]
        head = llm.get_output_embeddings()
        if head is not None:
            handles.append(head.register_forward_hook(self._logits_hook))
        return handles

    def _embed_hook(self, module: nn.Module, args: tuple, output: torch.Tensor
                    ) -> torch.Tensor:
        ids = args[0]
        hit = torch.isin(ids, self.ids)
        if not bool(hit.any()):
            return output
        index = torch.zeros_like(ids)
        for k, tid in enumerate(self.token_ids):
            index = torch.where(ids == tid, k, index)
        rows = self.input_rows.to(output.dtype)[index]
        return torch.where(hit.unsqueeze(-1), rows, output)

    def _logits_hook(self, module: nn.Module, args: tuple, output: torch.Tensor
                     ) -> torch.Tensor:
        hidden = args[0]
        own = hidden.to(self.output_rows.dtype) @ self.output_rows.t()
        return output.index_copy(-1, self.ids.to(output.device), own.to(output.dtype))


__all__ = ["OutputTokenRows", "TOKEN_FORMAT", "add_output_tokens", "apply_task_prefix",
           "find_output_runs", "output_token_names", "output_token_text",
           "strip_output_tokens", "task_prefixes"]
