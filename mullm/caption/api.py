"""``caption_files``: the Python API, in memory (no output file, no resume)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mullm.caption.engine import Captioner
from mullm.caption.inputs import resolve_inputs
from mullm.caption.settings import DEFAULT_PROMPT, CaptionSettings, generation_config

if TYPE_CHECKING:
    from mullm.model import MusicLLM


def caption_files(model: MusicLLM, paths: str | os.PathLike | Iterable[str | os.PathLike],
                  prompt: str = DEFAULT_PROMPT, batch_size: int = 8, max_new_tokens: int = 64,
                  do_sample: bool = False, num_beams: int = 1, temperature: float = 1.0,
                  top_p: float = 1.0, seed: int | None = None, window_s: float | None = None,
                  hop_s: float | None = None, summary: str = "llm",
                  model_name: str | None = None, **gen_kwargs: Any) -> list[dict[str, Any]]:
    """Caption files, folders, globs or manifests; records in input (id) order.

    ``gen_kwargs`` are further ``GenerationConfig`` settings (``min_new_tokens`` ...).
    Each record has the fields of docs/INTERFACES.md (Caption records).

    Raises:
        DataError: no inputs or a malformed manifest.
        ValueError: settings that cannot work (naming the flag).
    """
    items = resolve_inputs(paths)
    settings = CaptionSettings(
        generation_config(max_new_tokens, do_sample, num_beams, temperature, top_p,
                          **gen_kwargs),
        seed=seed, window_s=window_s, hop_s=hop_s, summary=summary)
    got: dict[str, dict[str, Any]] = {}
    Captioner(model, prompt, batch_size, settings, model_name).run(
        items, lambda r: got.__setitem__(r["id"], r))
    return [got[it.id] for it in items]
