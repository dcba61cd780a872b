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

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


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


__all__ = ["OutputTokenRows", "find_output_runs"]
