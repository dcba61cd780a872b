"""Streaming replies for the demo: text pieces as the LLM generates them.

``stream_chat`` runs ``MusicLLM.chat``'s generation in a background thread with
transformers' ``TextIteratorStreamer`` and yields the decoded text as it grows. A model's
media state is scoped to each call (``MusicLLM.injection``), so several streams may run on
one model at once, each with its own clips.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mullm.model import MusicLLM


def stream_chat(model: MusicLLM, prompt: str, audio: Any = None, image: Any = None,
                history: list[dict] | None = None, timeout_s: float | None = 600.0,
                **gen_kwargs: Any) -> Iterator[str]:
    """Yield pieces of the reply to ``prompt`` as they are generated (joined, they equal
    ``model.chat(...)`` with the same arguments). Beam search cannot stream."""
    from transformers import TextIteratorStreamer

    if gen_kwargs.get("num_beams", 1) != 1:
        raise ValueError(f"num_beams={gen_kwargs['num_beams']}: streaming needs num_beams=1 "
                         "(beam search only knows its answer at the end)")
    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True,
                                    skip_special_tokens=True, timeout=timeout_s)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            model.chat(prompt, audio=audio, image=image, history=history,
                       streamer=streamer, **gen_kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            streamer.end()  # unblock the consumer

    thread = threading.Thread(target=work, name="mullm-stream", daemon=True)
    thread.start()
    first = True
    try:
        for piece in streamer:
            if first:
                # chat() strips the reply; strip the leading whitespace here to match.
                piece = piece.lstrip()
                first = not piece
            if piece:
                yield piece
    finally:
        thread.join()
    if errors:
        raise errors[0]


def stream_to(model: MusicLLM, prompt: str, write: Any = None, **kwargs: Any) -> str:
    """Stream a reply into ``write`` (default: stdout, flushed per piece); return it."""
    import sys

    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    parts = []
    for piece in stream_chat(model, prompt, **kwargs):
        write(piece)
        parts.append(piece)
    return "".join(parts).rstrip()


__all__ = ["stream_chat", "stream_to"]
