"""What a caption job is asked to do: the prompts, the generation settings
(a ``transformers.GenerationConfig``) and the job's own settings (windows, summary, seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mullm.errors import MullmError

if TYPE_CHECKING:
    from transformers import GenerationConfig

DEFAULT_PROMPT = "Describe this music."
# The whole-track summary prompt (text only: the LLM reads its own segment captions).
SUMMARY_PROMPT = (
    "Here are descriptions of consecutive parts of one music track, with their times:\n"
    "{segments}\n"
    "Describe the whole track in one or two sentences."
)
# Segment captions per summary prompt; more are summarised in rounds (groups of this many,
# then a summary of the group summaries), so the prompt stays well inside the LLM's context.
SUMMARY_GROUP = 8
# The generation settings every record names, in the record's order; any other setting of
# the GenerationConfig that differs from transformers' default goes under "extra".
GENERATION_KEYS = ("max_new_tokens", "do_sample", "num_beams", "temperature", "top_p")


class CaptionJobError(MullmError, ValueError):
    """The job cannot run as asked (settings differ from the file's, bad shard spec ...)."""


def _check_generation(max_new_tokens: int, do_sample: bool, num_beams: int,
                      temperature: float, top_p: float) -> None:
    """Refuse values that cannot work, naming the command-line flag."""
    if max_new_tokens is None or max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens={max_new_tokens}: must be >= 1")
    if num_beams < 1:
        raise ValueError(f"--num-beams={num_beams}: must be >= 1")
    if do_sample and temperature <= 0:
        raise ValueError(f"--temperature={temperature}: must be > 0 when sampling")
    if not 0 < top_p <= 1:
        raise ValueError(f"--top-p={top_p}: must be in (0, 1]")


def generation_config(max_new_tokens: int = 64, do_sample: bool = False, num_beams: int = 1,
                      temperature: float = 1.0, top_p: float = 1.0,
                      **extra: Any) -> GenerationConfig:
    """A validated ``GenerationConfig`` for captioning; ``extra`` holds any other
    ``generate`` setting (``min_new_tokens``, ``repetition_penalty`` ...).

    Raises:
        ValueError: a value that cannot work, naming its flag (``--top-p=0: must be in
            (0, 1]``), or one transformers refuses.
    """
    from transformers import GenerationConfig

    _check_generation(max_new_tokens, do_sample, num_beams, temperature, top_p)
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample,
                            num_beams=num_beams, temperature=temperature, top_p=top_p, **extra)


def generation_extras(config: GenerationConfig) -> dict[str, Any]:
    """The settings of ``config`` beyond ``GENERATION_KEYS`` that differ from the default."""
    diff = config.to_diff_dict()
    return {k: v for k, v in diff.items()
            if k not in GENERATION_KEYS and k != "transformers_version"}


@dataclass
class CaptionSettings:
    """Everything that changes what the captions say; stored with every record.

    ``generation`` is the LLM's side (beams, sampling, lengths); ``seed`` (per-batch seeds
    derive from it), ``window_s`` / ``hop_s`` (seconds per segment and between segment
    starts; None: the encoder's) and ``summary`` ("llm" or "concat": how a long track's
    whole-track caption is made) are the job's own.
    """

    generation: GenerationConfig = field(default_factory=generation_config)
    seed: int | None = None
    window_s: float | None = None
    hop_s: float | None = None
    summary: str = "llm"

    def validate(self) -> None:
        """Refuse values that cannot work, naming the flag.

        Raises:
            ValueError: naming the flag, the value and what would work.
        """
        _check_generation(*(getattr(self.generation, k) for k in GENERATION_KEYS))
        if self.window_s is not None and self.window_s <= 0:
            raise ValueError(f"--window-s={self.window_s}: must be > 0")
        if self.hop_s is not None:
            if self.hop_s <= 0:
                raise ValueError(f"--hop-s={self.hop_s}: must be > 0")
            if self.window_s is not None and self.hop_s > self.window_s:
                raise ValueError(f"--hop-s={self.hop_s} > --window-s={self.window_s} would "
                                 "skip audio; use a hop <= the window")
        if self.summary not in ("llm", "concat"):
            raise ValueError(f"summary={self.summary!r}: choose 'llm' or 'concat'")

    def record(self) -> dict[str, Any]:
        """The records' ``generation`` field (``extra`` only when used): the same keys as
        ever, so files written by earlier versions still resume."""
        out = {k: getattr(self.generation, k) for k in GENERATION_KEYS}
        out.update(seed=self.seed, window_s=self.window_s, hop_s=self.hop_s,
                   summary=self.summary)
        extra = generation_extras(self.generation)
        if extra:
            out["extra"] = extra
        return out
