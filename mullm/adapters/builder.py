"""String-keyed adapter builder (LLaVA ``multimodal_projector/builder.py`` style)."""

from __future__ import annotations

from mullm.adapters.base import Adapter
from mullm.adapters.linear import LinearAdapter
from mullm.adapters.mlp import MLPAdapter
from mullm.adapters.perceiver import PerceiverAdapter
from mullm.adapters.qformer import QFormerAdapter
from mullm.adapters.window_qformer import WindowQFormerAdapter
from mullm.config import AdapterConfig, validate_adapter
from mullm.errors import ConfigError

ADAPTERS: dict[str, type[Adapter]] = {
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "qformer": QFormerAdapter,
    "window_qformer": WindowQFormerAdapter,
    "perceiver": PerceiverAdapter,
}


def _adapter_class(config: AdapterConfig) -> type[Adapter]:
    if config.name not in ADAPTERS:
        raise ConfigError(
            f"unknown adapter name {config.name!r}; known adapters: {', '.join(ADAPTERS)}"
        )
    return ADAPTERS[config.name]


def adapter_num_tokens(config: AdapterConfig, frame_rate: float, num_frames: int) -> int:
    """Tokens the adapter ``config`` describes emits for ``num_frames`` valid encoder frames at
    ``frame_rate`` frames/s, without building it.

    Raises:
        ConfigError: an unknown adapter name.
        ValueError: ``num_frames`` < 1.
    """
    return _adapter_class(config).count_tokens(config, frame_rate, num_frames)


def build_adapter(config: AdapterConfig, in_dim: int, out_dim: int,
                  frame_rate: float) -> Adapter:
    """Build the adapter named by ``config.name`` after validating ``config``."""
    cls = _adapter_class(config)
    validate_adapter(config)
    return cls(config, in_dim, out_dim, frame_rate)


__all__ = ["ADAPTERS", "Adapter", "adapter_num_tokens", "build_adapter"]
