"""Adapters: map encoder frames (B, T, D) to LLM tokens (B, N, d_llm)."""

from __future__ import annotations

from mullm.adapters.builder import ADAPTERS, Adapter, adapter_num_tokens, build_adapter

__all__ = ["ADAPTERS", "Adapter", "adapter_num_tokens", "build_adapter"]
