"""The demo's limits and defaults (``DemoConfig``) and the per-turn generation settings.

Limits are data: a YAML file (``mullm demo --demo-config demo.yaml``) read strictly with the
project's config loader, then command-line flags on top. Nothing here imports gradio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from mullm.errors import ConfigError

LongAudio = Literal["chunk", "first"]
LONG_AUDIO_MODES: tuple[str, ...] = get_args(LongAudio)


@dataclass
class DemoConfig:
    """Limits and defaults of the chat demo.

    Attributes:
        max_upload_mb: largest file accepted (MB, 10**6 bytes), audio or image.
        max_audio_s: longest audio clip accepted (seconds). Clips longer than the model's
            window (its encoder's ``max_duration_s``) and up to this are accepted and handled
            by ``long_audio``.
        long_audio: "chunk": a long clip is heard window by window through the captioning
            path (one caption per window, then an LLM summary) and the turn gets that
            whole-track description; "first": only its first window goes to the model.
        concurrency: answers generated at once (gradio's queue concurrency limit); every
            session shares the one model.
        max_queue: requests waiting beyond ``concurrency`` before new ones are refused.
        max_new_tokens, temperature, top_p, seed: the settings panel's defaults
            (temperature 0 means greedy decoding; seed None means a fresh seed per answer).
        max_sessions: browser sessions kept in memory; the least recently used beyond it
            is forgotten (its files deleted).
    """

    max_upload_mb: float = 50.0
    max_audio_s: float = 600.0
    long_audio: LongAudio = "chunk"
    concurrency: int = 2
    max_queue: int = 32
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_sessions: int = 64

    def validate(self) -> DemoConfig:
        """Refuse values that cannot work, naming the key; returns self."""
        checks = [
            (self.max_upload_mb > 0, "max_upload_mb", "> 0"),
            (self.max_audio_s > 0, "max_audio_s", "> 0"),
            (self.long_audio in LONG_AUDIO_MODES, "long_audio", f"one of {LONG_AUDIO_MODES}"),
            (self.concurrency >= 1, "concurrency", ">= 1"),
            (self.max_queue >= 1, "max_queue", ">= 1"),
            (self.max_new_tokens >= 1, "max_new_tokens", ">= 1"),
            (self.temperature >= 0, "temperature", ">= 0 (0 = greedy)"),
            (0 < self.top_p <= 1, "top_p", "in (0, 1]"),
            (self.max_sessions >= 1, "max_sessions", ">= 1"),
        ]
        for ok, key, allowed in checks:
            if not ok:
                raise ConfigError(f"demo config: {key}={getattr(self, key)!r}: must be {allowed}")
        return self

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1_000_000)


def load_demo_config(path: str | Path | None = None, **overrides: Any) -> DemoConfig:
    """A ``DemoConfig`` from a YAML mapping (optional), then ``overrides`` that are not None.

    Raises:
        ConfigError: an unknown key, a wrong type or an impossible value, named.
        FileNotFoundError: ``path`` does not exist.
    """
    import yaml

    from mullm.config import from_dict

    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a demo config is a mapping of keys, got "
                              f"{type(loaded).__name__}")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(DemoConfig, data, prefix="demo").validate()


@dataclass(frozen=True)
class TurnSettings:
    """Generation settings of one answer, as chosen in the settings panel.

    ``temperature`` 0 means greedy decoding (``top_p`` is then unused); ``seed`` None means
    no fixed seed.
    """

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    @classmethod
    def from_ui(cls, max_new_tokens: Any, temperature: Any, top_p: Any, seed: Any
                ) -> TurnSettings:
        """Read the panel's values (sliders give floats; an empty seed box gives None).

        Raises:
            ValueError: a value out of range, with the allowed range (shown to the user).
        """
        def num(value: Any, name: str) -> float:
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(out):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return out

        n = num(max_new_tokens, "max new tokens")
        if n < 1 or n != int(n):
            raise ValueError(f"max new tokens must be a whole number >= 1, got {max_new_tokens}")
        t = num(temperature, "temperature")
        if t < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        p = num(top_p, "top-p")
        if not 0 < p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {top_p}")
        s: int | None = None
        if seed not in (None, ""):
            sv = num(seed, "seed")
            if sv != int(sv) or sv < 0:
                raise ValueError(f"seed must be a whole number >= 0 (or empty), got {seed}")
            s = int(sv)
        return cls(int(n), t, p, s)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MusicLLM.chat`` / ``generate_text``."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                              "do_sample": self.temperature > 0, "seed": self.seed}
        if self.temperature > 0:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        return kw

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the export's ``meta``."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed}


__all__ = ["LONG_AUDIO_MODES", "DemoConfig", "TurnSettings", "load_demo_config"]
