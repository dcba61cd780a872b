"""Output projectors: LLM hidden states at the output tokens -> a music decoder's conditioning.

A projector maps (B, n, d_llm) (the LLM's last hidden states at ``[AUD0]..[AUDn-1]``, plus the
tokens' own input rows, as M2UGen adds them) to (B, T, D): T conditioning tokens of the
decoder's width D (MusicGen: T5 states; AudioLDM2: its packed ``prompt_embeds`` and GPT-2
states). Chosen by name through ``build_projector``, like the adapters.
"""

from __future__ import annotations

import torch
from torch import nn

from mullm.errors import ConfigError
from mullm.outputs.config import ProjectorConfig


class OutputProjector(nn.Module):
    """Base: ``forward(states (B, n, d_llm)) -> (B, num_out, out_dim)``."""

    def __init__(self, config: ProjectorConfig, in_dim: int, num_in: int, num_out: int,
                 out_dim: int) -> None:
        super().__init__()
        self.config = config
        self.in_dim, self.num_in, self.num_out, self.out_dim = in_dim, num_in, num_out, out_dim

    def _check(self, states: torch.Tensor) -> None:
        if states.dim() != 3 or tuple(states.shape[1:]) != (self.num_in, self.in_dim):
            raise ValueError(f"the output projector takes (B, {self.num_in}, {self.in_dim}) "
                             f"states, got {tuple(states.shape)}")


class MLPProjector(OutputProjector):
    """A per-token MLP to the decoder's width, then a learned linear map from the n output
    tokens to the ``num_out`` conditioning tokens."""

    def __init__(self, config: ProjectorConfig, in_dim: int, num_in: int, num_out: int,
                 out_dim: int) -> None:
        super().__init__(config, in_dim, num_in, num_out, out_dim)
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(width, config.hidden_size), nn.GELU(),
                       nn.Dropout(config.dropout)]
            width = config.hidden_size
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)
        # Token mixing: conditioning token t is a learned mix of the n output tokens.
        self.mix = nn.Linear(num_in, num_out)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n, d_llm) -> (B, num_out, out_dim)."""
        self._check(states)
        x = self.mlp(states)                              # (B, n, D)
        return self.mix(x.transpose(1, 2)).transpose(1, 2)


class TransformerProjector(OutputProjector):
    """M2UGen's output projector: ``Linear(d_llm, w)``, then ``torch.nn.Transformer`` (encoder
    over the n token states, decoder over ``num_out`` learned queries; post-norm, no dropout by
    default, feed-forward 4w), then ``Linear(w, out_dim)``."""

    def __init__(self, config: ProjectorConfig, in_dim: int, num_in: int, num_out: int,
                 out_dim: int) -> None:
        super().__init__(config, in_dim, num_in, num_out, out_dim)
        w = config.hidden_size
        self.fc = nn.Linear(in_dim, w)
        self.transformer = nn.Transformer(
            d_model=w, nhead=config.num_heads, num_encoder_layers=config.num_encoder_layers,
            num_decoder_layers=config.num_decoder_layers, dim_feedforward=4 * w,
            dropout=config.dropout, batch_first=True, norm_first=False)
        self.queries = nn.Parameter(torch.randn(1, num_out, w) * 0.02)
        self.out = nn.Linear(w, out_dim)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n, d_llm) -> (B, num_out, out_dim)."""
        self._check(states)
        x = self.fc(states)
        y = self.transformer(x, self.queries.expand(x.shape[0], -1, -1).to(x.dtype))
        return self.out(y)


PROJECTORS: dict[str, type[OutputProjector]] = {
    "mlp": MLPProjector,
    "transformer": TransformerProjector,
}


def build_projector(config: ProjectorConfig, in_dim: int, num_in: int, num_out: int,
                    out_dim: int) -> OutputProjector:
    """The projector named by ``config.name``, mapping (B, num_in, in_dim) to
    (B, num_out, out_dim).

    Raises:
        ConfigError: an unknown projector name (the known ones listed).
    """
    if config.name not in PROJECTORS:
        raise ConfigError(f"unknown output projector {config.name!r}; known projectors: "
                          f"{', '.join(PROJECTORS)}")
    return PROJECTORS[config.name](config, in_dim, num_in, num_out, out_dim)


__all__ = ["MLPProjector", "OutputProjector", "PROJECTORS", "TransformerProjector",
           "build_projector"]
