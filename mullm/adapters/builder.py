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

__all__ = ["ADAPTERS", "Adapter", "build_adapter"]


def build_adapter(config: AdapterConfig, in_dim: int, out_dim: int,
                  frame_rate: float) -> Adapter:
    """Build the adapter named by ``config.name`` after validating ``config``."""
    if config.name not in ADAPTERS:
        raise ConfigError(
            f"unknown adapter name {config.name!r}; known adapters: {', '.join(ADAPTERS)}"
        )
    validate_adapter(config)
    return ADAPTERS[config.name](config, in_dim, out_dim, frame_rate)
