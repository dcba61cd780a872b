"""M2UGen's output tokens ``[AUD0]..[AUDn-1]`` as text and vocabulary: their names, adding
them to a tokenizer, removing them from a reply, and the task prefixes. No torch: the processor
and the data tools use these; ``mullm.outputs.tokens`` holds their trainable rows."""

from __future__ import annotations

import re
from typing import Any

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


__all__ = ["TOKEN_FORMAT", "add_output_tokens", "apply_task_prefix", "output_token_names",
           "output_token_text", "strip_output_tokens", "task_prefixes"]
