"""Rotary position embedding, applied in place to q and k at arbitrary per-token positions.

Hugging Face convention ("rotate_half"): element ``i`` of a head is rotated together with element
``i + head_dim/2``, by the angle ``position * inv_freq[i]``. The engine's model undoes the GGUF
(interleaved) permutation at load time, so this is the layout its q/k projections produce.
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]


@triton.jit
def _rotate_heads(
    base_ptr,
    stride_h,
    n_heads,
    cos,
    sin,
    half,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    # Rotate the [n_heads, head_dim] slab of one token; cos/sin are [BLOCK_HALF] rows.
    heads = tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_HALF)
    mask = (heads[:, None] < n_heads) & (cols[None, :] < half)
    lo_ptrs = base_ptr + heads[:, None] * stride_h + cols[None, :]
    hi_ptrs = lo_ptrs + half
    lo = tl.load(lo_ptrs, mask=mask, other=0.0).to(tl.float32)
    hi = tl.load(hi_ptrs, mask=mask, other=0.0).to(tl.float32)
    # x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-hi, lo).
    new_lo = lo * cos[None, :] - hi * sin[None, :]
    new_hi = hi * cos[None, :] + lo * sin[None, :]
    tl.store(lo_ptrs, new_lo.to(base_ptr.dtype.element_ty), mask=mask)
    tl.store(hi_ptrs, new_hi.to(base_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    q_ptr,
    k_ptr,
    pos_ptr,
    inv_freq_ptr,
    cos_ptr,
    sin_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_cache,
    n_q_heads,
    n_k_heads,
    half,
    USE_CACHE: tl.constexpr,
    BLOCK_QH: tl.constexpr,
    BLOCK_KH: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    # One program per token: the angle is computed once and shared by every q and k head.
    tok = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + tok)
    cols = tl.arange(0, BLOCK_HALF)
    cmask = cols < half
    if USE_CACHE:
        row = pos.to(tl.int64) * stride_cache
        cos = tl.load(cos_ptr + row + cols, mask=cmask, other=1.0).to(tl.float32)
        sin = tl.load(sin_ptr + row + cols, mask=cmask, other=0.0).to(tl.float32)
    else:
        # fp32 product, as Hugging Face computes ``positions * inv_freq``.
        inv_freq = tl.load(inv_freq_ptr + cols, mask=cmask, other=0.0)
        angle = pos.to(tl.float32) * inv_freq
        cos = tl.cos(angle)
        sin = tl.sin(angle)
    _rotate_heads(q_ptr + tok * stride_qt, stride_qh, n_q_heads, cos, sin, half, BLOCK_QH, BLOCK_HALF)
    _rotate_heads(k_ptr + tok * stride_kt, stride_kh, n_k_heads, cos, sin, half, BLOCK_KH, BLOCK_HALF)


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``1 / theta ** (2i / head_dim)`` for ``i < head_dim/2``, computed exactly as Hugging Face does."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float32)
    return 1.0 / (theta ** (exponent / head_dim))


def rope_(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    theta: float = 10000.0,
    inv_freq: torch.Tensor | None = None,
    cos_sin_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q`` and ``k`` in place (HF "rotate_half" convention) and return them.

    Args:
        q: ``[tokens, n_heads, head_dim]``; the last dim must be contiguous (views of a fused qkv
            output are fine).
        k: ``[tokens, n_kv_heads, head_dim]``, same constraints.
        positions: ``[tokens]`` integer positions (int32 or int64), one per token, in any order.
        theta: rope base, used when neither ``inv_freq`` nor ``cos_sin_cache`` is given.
        inv_freq: optional ``[head_dim/2]`` fp32 frequencies (e.g. with Llama-3 scaling applied).
        cos_sin_cache: optional ``(cos, sin)``, each ``[max_pos, head_dim/2]`` or Hugging Face's
            duplicated ``[max_pos, head_dim]`` (only the first half is read). Takes precedence.
    """
    assert q.dim() == 3 and k.dim() == 3, "q and k must be [tokens, heads, head_dim]"
    tokens, n_q_heads, head_dim = q.shape
    assert k.shape[0] == tokens and k.shape[2] == head_dim, "k must be [tokens, n_kv_heads, head_dim]"
    assert head_dim % 2 == 0, "head_dim must be even"
    assert q.stride(-1) == 1 and k.stride(-1) == 1, "q/k last dim must be contiguous (in-place op)"
    assert positions.shape == (tokens,), "one position per token"
    half = head_dim // 2
    positions = positions.contiguous()
    if cos_sin_cache is not None:
        cos, sin = cos_sin_cache
        assert cos.shape == sin.shape and cos.shape[-1] in (half, head_dim)
        assert cos.stride(-1) == 1 and sin.stride(-1) == 1 and cos.stride(0) == sin.stride(0)
        freq = cos  # unused pointer
        stride_cache = cos.stride(0)
    else:
        if inv_freq is None:
            inv_freq = rope_inv_freq(head_dim, theta, q.device)
        freq = inv_freq.to(device=q.device, dtype=torch.float32).contiguous()
        assert freq.shape == (half,)
        cos = sin = freq  # unused pointers
        stride_cache = 0
    if tokens > 0:
        _rope_kernel[(tokens,)](
            q,
            k,
            positions,
            freq,
            cos,
            sin,
            q.stride(0),
            q.stride(1),
            k.stride(0),
            k.stride(1),
            stride_cache,
            n_q_heads,
            k.shape[1],
            half,
            USE_CACHE=cos_sin_cache is not None,
            BLOCK_QH=triton.next_power_of_2(n_q_heads),
            BLOCK_KH=triton.next_power_of_2(k.shape[1]),
            BLOCK_HALF=triton.next_power_of_2(half),
        )
    return q, k


def rope_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    theta: float = 10000.0,
    inv_freq: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place torch reference for :func:`rope_` (Hugging Face ``apply_rotary_pos_emb``)."""
    head_dim = q.shape[-1]
    if inv_freq is None:
        inv_freq = rope_inv_freq(head_dim, theta, q.device)
    freqs = positions.float()[:, None] * inv_freq.float()[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    qf, kf = q.float(), k.float()
    q_out = qf * cos + rotate_half(qf) * sin
    k_out = kf * cos + rotate_half(kf) * sin
    return q_out.to(q.dtype), k_out.to(k.dtype)
