"""The two injection kinds that live inside the LLM's layers: gated cross-attention
(Flamingo) and gated per-layer prefixes (LLaMA-Adapter, MU-LLaMA, M2UGen).

Both attach to the LLM through forward hooks, so the LLM's own modules, state dict and
peft targets are untouched, and both read the current call's media tokens from a
``MediaState`` that the model computes once at prefill: during ``generate`` the encoders and
adapters never run again, each new token only attends to the stored tokens.

The state is scoped to a call, never stored on a module: ``injection_scope`` puts
{injector: MediaState} in a ``contextvars.ContextVar`` for the duration of a ``with`` block, so
two threads generating on one model (the demo) each see only their own media, and nothing is
left behind when a call ends or fails. Activation checkpointing recomputes layers during
backward, after the block has ended (and on CUDA in another thread): ``checkpoint_context``
is passed to ``torch.utils.checkpoint`` as its ``context_fn`` so the recomputation sees the
same state as the forward pass did.

Gates are zero-initialised: tanh(0) = 0, so a freshly built model gives exactly the LLM's
own logits.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mullm.errors import ConfigError

_ACTIVE: contextvars.ContextVar[dict[int, MediaState] | None] = contextvars.ContextVar(
    "mullm_injection_state", default=None)


@dataclass
class MediaState:
    """Per-sample media tokens (B, M, D) with mask (B, M); rows with no media are all False.

    ``used`` is set by the first hook that reads it, so the model can tell an injection that
    never reached the LLM's layers from one that did.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    used: bool = False

    def expand_to(self, batch: int) -> MediaState:
        """Repeat rows to match a batch that generate() expanded (beam search, sampling)."""
        if self.tokens.shape[0] == batch:
            return self
        if batch % self.tokens.shape[0]:
            raise RuntimeError(
                f"media state has {self.tokens.shape[0]} rows but the LLM batch has {batch}"
            )
        k = batch // self.tokens.shape[0]
        return MediaState(self.tokens.repeat_interleave(k, 0), self.mask.repeat_interleave(k, 0))


@contextlib.contextmanager
def injection_scope(states: dict[nn.Module, MediaState]) -> Iterator[None]:
    """Make ``states`` ({injector: its media for this call}) visible to the injectors' hooks
    in this thread (and context) until the block ends."""
    token = _ACTIVE.set({id(inj): st for inj, st in states.items()})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def current_state(injector: nn.Module) -> MediaState | None:
    """The media ``injector`` should use now, or None (text only, or outside a call)."""
    active = _ACTIVE.get()
    state = None if active is None else active.get(id(injector))
    if state is not None:
        state.used = True
    return state


def checkpoint_context() -> tuple[contextlib.AbstractContextManager,
                                  contextlib.AbstractContextManager]:
    """``context_fn`` for non-reentrant ``torch.utils.checkpoint``: the recomputation during
    backward runs with the injection state that was active in the forward pass."""
    saved = _ACTIVE.get()

    @contextlib.contextmanager
    def restore() -> Iterator[None]:
        token = _ACTIVE.set(saved)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    return contextlib.nullcontext(), restore()


def _hidden_from_args(args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    if args:
        return args[0], True
    return kwargs["hidden_states"], False


class GatedCrossAttention(nn.Module):
    """A Flamingo block: tanh-gated cross-attention to media tokens, then a gated FFN."""

    def __init__(self, dim: int, num_heads: int, ff_mult: int = 2) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(
                f"injection.num_heads={num_heads} must divide the LLM hidden size {dim}"
            )
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim * ff_mult), nn.GELU(),
                                nn.Linear(dim * ff_mult, dim))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, media: MediaState) -> torch.Tensor:
        """x (B, S, D) -> x plus gated attention to ``media``; rows without media unchanged."""
        has = media.mask.any(1)
        pad = ~media.mask
        # A row with no media would attend to nothing (NaN): let it see one token, then zero it.
        pad[:, 0] = pad[:, 0] & has
        mem = media.tokens.to(x.dtype)
        a, _ = self.attn(self.norm(x), mem, mem, key_padding_mask=pad, need_weights=False)
        keep = has.to(x.dtype)[:, None, None]
        x = x + torch.tanh(self.attn_gate).to(x.dtype) * (a * keep)
        return x + torch.tanh(self.ff_gate).to(x.dtype) * (self.ff(self.ff_norm(x)) * keep)


class CrossAttentionInjector(nn.Module):
    """Gated cross-attention blocks before every N-th decoder layer."""

    def __init__(self, layers: list[int], dim: int, num_heads: int) -> None:
        super().__init__()
        self.layer_ids = list(layers)
        self.blocks = nn.ModuleDict({str(i): GatedCrossAttention(dim, num_heads) for i in layers})

    def attach(self, decoder_layers: nn.ModuleList) -> list:
        """Register pre-hooks on the chosen decoder layers; returns the hook handles."""
        handles = []
        for i in self.layer_ids:
            block = self.blocks[str(i)]

            def hook(module: nn.Module, args: tuple, kwargs: dict, block=block):  # noqa: ANN202
                state = current_state(self)
                if state is None:
                    return None
                h, positional = _hidden_from_args(args, kwargs)
                h = block(h, state.expand_to(h.shape[0]))
                if positional:
                    return (h, *args[1:]), kwargs
                kwargs = dict(kwargs, hidden_states=h)
                return args, kwargs

            handles.append(decoder_layers[i].register_forward_pre_hook(hook, with_kwargs=True))
        return handles


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class PrefixInjector(nn.Module):
    """LLaMA-Adapter gated prefixes on chosen layers, with the media tokens added to them.

    At each chosen layer the (rotated) queries also attend, through a separate softmax, to
    ``prefix + media`` projected by that layer's own k/v projections; the result is scaled
    per head by tanh(gate) (zero at init) and added to the attention output.
    """

    def __init__(self, layers: list[int], prefix_len: int, dim: int, num_heads: int,
                 num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.layer_ids = list(layers)
        self.prefix = nn.Parameter(torch.randn(len(layers), prefix_len, dim) * 0.02)
        self.gate = nn.Parameter(torch.zeros(len(layers), num_heads))
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim

    def queries(self, attn: nn.Module, h: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """The attention's own queries (B, heads, S, head_dim) for input ``h`` (B, S, D): its
        q_proj, q_norm (Qwen3, Gemma) and rotary embedding, as the LLM computes them."""
        B, S, _ = h.shape
        q = attn.q_proj(h).view(B, S, -1, self.head_dim)
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q)
        q = q.transpose(1, 2)
        pos = kwargs.get("position_embeddings")
        if pos is not None:
            cos, sin = pos
            q = q * cos.unsqueeze(1) + _rotate_half(q) * sin.unsqueeze(1)
        return q

    def _delta(self, j: int, attn: nn.Module, h: torch.Tensor, kwargs: dict,
               state: MediaState) -> torch.Tensor:
        B, S, _ = h.shape
        state = state.expand_to(B)
        hd = self.head_dim
        q = self.queries(attn, h, kwargs)
        # One media token is broadcast over the prefix (MU-LLaMA); P tokens are added 1:1.
        media = state.tokens.to(h.dtype)
        kv_in = self.prefix[j].to(h.dtype)[None] + media
        P = kv_in.shape[1]
        k = attn.k_proj(kv_in).view(B, P, -1, hd)
        if hasattr(attn, "k_norm"):
            k = attn.k_norm(k)
        k = k.transpose(1, 2)
        v = attn.v_proj(kv_in).view(B, P, -1, hd).transpose(1, 2)
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        scale = getattr(attn, "scaling", 1.0 / math.sqrt(hd))
        probs = torch.softmax((q @ k.transpose(-1, -2)).float() * scale, -1).to(h.dtype)
        gate = torch.tanh(self.gate[j]).to(h.dtype)[None, :, None, None]
        out = (gate * probs) @ v
        out = out.transpose(1, 2).reshape(B, S, -1)
        o = attn.o_proj
        delta = o(out) - o(torch.zeros_like(out[:, :1]))
        return delta * state.mask.any(1).to(h.dtype)[:, None, None]

    def check_attention(self, attn: nn.Module, layer: int) -> None:
        """Refuse, at build time, an attention module the prefix cannot use: it needs separate
        ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` linear layers (Llama, Qwen2, Mistral,
        Gemma); fused projections (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``) are not supported."""
        missing = [n for n in ("q_proj", "k_proj", "v_proj", "o_proj")
                   if not isinstance(getattr(attn, n, None), nn.Module)]
        if missing:
            have = sorted(n for n, _ in attn.named_children())
            raise ConfigError(
                f"injection.kind=prefix needs separate q_proj/k_proj/v_proj/o_proj in the "
                f"LLM's attention; layer {layer}'s {type(attn).__name__} lacks {missing} (it "
                f"has {have}: fused q/k/v projections are not supported); use "
                f"injection.kind=xattn or splice with this LLM")

    def attach(self, decoder_layers: nn.ModuleList, attention_of) -> list:  # noqa: ANN001
        """Register forward hooks on the chosen layers' attention modules.

        Raises:
            ConfigError: an attention module without separate q/k/v/o projections.
        """
        attns = [attention_of(decoder_layers[i]) for i in self.layer_ids]
        for i, attn in zip(self.layer_ids, attns):
            self.check_attention(attn, i)
        handles = []
        for j, attn in enumerate(attns):

            def hook(module: nn.Module, args: tuple, kwargs: dict, output, j=j):  # noqa: ANN001, ANN202
                state = current_state(self)
                if state is None:
                    return None
                h, _ = _hidden_from_args(args, kwargs)
                first = output[0] if isinstance(output, tuple) else output
                first = first + self._delta(j, module, h, kwargs, state)
                if isinstance(output, tuple):
                    return (first, *output[1:])
                return first

            handles.append(attn.register_forward_hook(hook, with_kwargs=True))
        return handles


def per_sample_media(tokens: torch.Tensor, token_mask: torch.Tensor, sample_index: torch.Tensor,
                     batch: int, reduce: str = "concat") -> MediaState:
    """Group item tokens (N, T, D) by sample into (B, M, D): "concat" joins every valid token
    of a sample's items; "mean" averages its items (prefix injection, fixed token count)."""
    D = tokens.shape[-1]
    if reduce == "mean":
        T = tokens.shape[1]
        out = tokens.new_zeros(batch, T, D)
        count = tokens.new_zeros(batch)
        out.index_add_(0, sample_index, tokens)
        count.index_add_(0, sample_index, torch.ones_like(sample_index, dtype=tokens.dtype))
        has = count > 0
        out = out / count.clamp(min=1)[:, None, None]
        return MediaState(out, has[:, None].expand(batch, T).clone())
    per = [tokens.new_zeros(0, D) for _ in range(batch)]
    for n in range(tokens.shape[0]):
        b = int(sample_index[n])
        per[b] = torch.cat([per[b], tokens[n][token_mask[n]]], 0)
    M = max(1, max(p.shape[0] for p in per))
    out = tokens.new_zeros(batch, M, D)
    mask = torch.zeros(batch, M, dtype=torch.bool, device=tokens.device)
    for b, p in enumerate(per):
        out[b, : p.shape[0]] = p
        mask[b, : p.shape[0]] = True
    return MediaState(out, mask)


def xattn_layers(num_layers: int, every: int) -> list[int]:
    """Layers that get a cross-attention block: every N-th, counting from layer 0."""
    return list(range(0, num_layers, every))


def prefix_layers(num_layers: int, top_k: int | None, layers: list[int] | None) -> list[int]:
    """The top K layers, or an explicit band."""
    if layers is not None:
        return sorted(layers)
    assert top_k is not None
    return list(range(num_layers - top_k, num_layers))


__all__ = ["CrossAttentionInjector", "GatedCrossAttention", "MediaState", "PrefixInjector",
           "checkpoint_context", "current_state", "injection_scope", "per_sample_media",
           "prefix_layers", "xattn_layers"]
