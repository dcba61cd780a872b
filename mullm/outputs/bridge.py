"""The music-output bridge of a ``MusicLLM``: output-token rows, the output projector, the
projector loss, and the (lazily loaded, frozen, never saved) music decoder.

``MusicLLM`` holds one ``MusicOutput`` as ``model.outputs["music"]`` when its config has a
``music_output`` section. Its parameters (the n input and output rows of ``[AUD0]..``, the
projector) are saved in ``trainable.safetensors`` under ``outputs.music.*``; the decoder is
referenced by the config and loaded on first use (training targets or generation), outside the
module tree, so it never reaches ``state_dict``, the optimizer, DDP or FSDP.

Which hidden states: the LLM's last hidden states (after its final norm) at the positions of
the output tokens themselves, plus each token's own input row (as M2UGen adds
``tok_embeddings`` of the tokens). M2UGen's released code reads the states one position
earlier (those that predict each token); at the token positions every state has seen the
whole reply and the tokens before it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mullm.outputs.config import MusicOutputConfig
from mullm.outputs.decoders.base import MusicDecoder
from mullm.outputs.decoders.builder import build_decoder, decoder_condition_shape
from mullm.outputs.projector import build_projector
from mullm.outputs.tokens import OutputTokenRows, find_output_runs


class MusicOutput(nn.Module):
    """Output tokens -> projector -> decoder conditioning, and the loss that trains it.

    Args:
        config: the model config's ``music_output`` section.
        token_ids: ids of ``[AUD0]..[AUDn-1]`` in the tokenizer.
        llm: the LLM (its embedding rows for those ids start the trainable rows).
        hidden_size: the LLM's hidden size.

    Raises:
        ModelLoadError: the decoder's config files cannot be read (the projector's output
            shape comes from them).
    """

    def __init__(self, config: MusicOutputConfig, token_ids: list[int], llm: nn.Module,
                 hidden_size: int) -> None:
        super().__init__()
        self.config = config
        emb_in = llm.get_input_embeddings().weight
        head = llm.get_output_embeddings()
        emb_out = head.weight if head is not None else emb_in
        with torch.no_grad():
            self.tokens = OutputTokenRows(token_ids, emb_in[token_ids], emb_out[token_ids])
        self.condition_shape = decoder_condition_shape(config.decoder)
        T, D = self.condition_shape
        self.projector = build_projector(config.projector, hidden_size, config.num_tokens, T, D)
        self._decoder: MusicDecoder | None = None  # a plain attribute: not a submodule

    @property
    def token_ids(self) -> list[int]:
        """Vocabulary ids of the output tokens, in order."""
        return self.tokens.token_ids

    @property
    def decoder(self) -> MusicDecoder:
        """The music decoder, loaded on first use onto the projector's device."""
        device = self.tokens.input_rows.device
        if self._decoder is None:
            self._decoder = build_decoder(self.config.decoder)
            if tuple(self._decoder.condition_shape) != tuple(self.condition_shape):
                raise RuntimeError(f"the decoder takes {self._decoder.condition_shape}, the "
                                   f"projector was built for {self.condition_shape}")
        if self._decoder.device != device:
            self._decoder.to(device)
        return self._decoder

    def attach(self, llm: nn.Module) -> list[Any]:
        """Hook the output tokens' rows into ``llm``'s embedding and head; returns handles."""
        return self.tokens.attach(llm)

    # ------------------------------------------------------------------ states -> condition
    def runs(self, input_ids: torch.Tensor) -> list[list[int]]:
        """Start positions of the complete output-token runs of each sample of (B, S)."""
        return [find_output_runs(row, self.token_ids) for row in input_ids]

    def gather(self, hidden: torch.Tensor, starts: list[tuple[int, int]]) -> torch.Tensor:
        """States (N, n, d) at the runs ``[(sample, start), ...]`` of ``hidden`` (B, S, d)."""
        n = self.config.num_tokens
        return torch.stack([hidden[b, s:s + n] for b, s in starts])

    def condition(self, states: torch.Tensor) -> torch.Tensor:
        """Projector output (N, T, D) for the states (N, n, d) at output tokens."""
        rows = self.tokens.input_rows
        return self.projector(states.to(rows.dtype) + rows.unsqueeze(0))

    # ------------------------------------------------------------------ training
    def zero_loss(self) -> torch.Tensor | None:
        """0 x every trainable parameter of the bridge (None when none trains). A batch
        without music targets leaves the projector without a gradient, and DDP expects one
        (zeros) for every trainable parameter on every step."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None
        return sum((p.float().sum() for p in params), torch.zeros((), device=params[0].device)
                   ) * 0.0

    def generation_loss(self, hidden: torch.Tensor, input_ids: torch.Tensor,
                        captions: list[str | None]) -> torch.Tensor | None:
        """Projector output at each captioned sample's last output-token run against the
        decoder's own text-encoder embedding of its caption: MSE, or 1 - cosine per token
        (tokens whose target is zero, the padding of a short caption, are left out).

        Args:
            hidden: the LLM's last hidden states (B, S, d).
            input_ids: (B, S).
            captions: per sample, the target caption, or None for samples without music.

        Returns:
            The mean loss over the captioned samples, or None when no sample has a caption.

        Raises:
            ValueError: a captioned sample without a complete run of output tokens (its
                reply lacks them, or ``max_length`` cut them).
        """
        if len(captions) != input_ids.shape[0]:
            raise ValueError(f"{len(captions)} captions for a batch of {input_ids.shape[0]}")
        picked = [b for b, c in enumerate(captions) if c]
        if not picked:
            return None
        runs = self.runs(input_ids)
        starts = []
        for b in picked:
            if not runs[b]:
                raise ValueError(
                    f"sample {b} has a music caption but no complete run of the "
                    f"{self.config.num_tokens} output tokens [AUD0]..: its reply must end with "
                    "them, and data.max_length must leave them in")
            starts.append((b, runs[b][-1]))
        pred = self.condition(self.gather(hidden, starts)).float()
        target = self.decoder.text_condition([captions[b] for b in picked]).to(pred.device)
        if self.config.loss == "mse":
            return F.mse_loss(pred, target)
        keep = target.abs().sum(-1) > 0
        cos = F.cosine_similarity(pred, target, dim=-1)
        return (1.0 - cos)[keep].mean() if bool(keep.any()) else pred.sum() * 0.0


__all__ = ["MusicOutput"]
