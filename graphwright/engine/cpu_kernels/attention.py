"""Decode attention straight over the paged KV cache (``attention.cpp``) and its torch reference.

Built with the quantized matmul (``qmatmul.py``), into the same library.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphwright.engine.cpu_kernels.qmatmul import available


def decode_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, slots: Tensor, lens: Tensor, scale: float
) -> Tensor:
    """One query token per sequence over its cached context: ``q`` [B, H, D] -> [B, H, D].

    ``k_cache``/``v_cache`` are one layer's ``[slots, KV, D]``; ``slots`` [B, L] lists each
    sequence's context slots, of which the first ``lens[b]`` are read.
    """
    if not available():
        raise RuntimeError("graphwright's CPU kernels are not available here (see the log for why)")
    return torch.ops.graphwright.decode_attention(q, k_cache, v_cache, slots, lens, scale)


def decode_attention_reference(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, slots: Tensor, lens: Tensor, scale: float
) -> Tensor:
    """What the kernel computes, in float64: gather, grouped-query softmax attention, masked to ``lens``."""
    heads = q.shape[1]
    kv_heads = k_cache.shape[1]
    keys = k_cache[slots].double().repeat_interleave(heads // kv_heads, dim=2)  # [B, L, H, D]
    values = v_cache[slots].double().repeat_interleave(heads // kv_heads, dim=2)
    scores = torch.einsum("bhd,blhd->bhl", q.double(), keys) * scale
    valid = torch.arange(slots.shape[1])[None, :] < lens.long()[:, None]  # [B, L]
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    return torch.einsum("bhl,blhd->bhd", torch.softmax(scores, dim=-1), values).float()
