"""Causal flash attention for prompts (prefill), grouped-query aware, variable-length batches.

Tokens of several prompts are packed along dim 0 (``cu_seqlens`` gives their boundaries, as in
flash-attn's varlen API); each prompt attends causally to itself only. Scores never reach
memory: each program keeps a ``BLOCK_M`` tile of queries and streams keys/values past it with
an online softmax.
"""

from __future__ import annotations

import itertools
import math

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]


@triton.jit
def _prefill_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    out_ptr,
    cu_seqlens_ptr,
    sm_scale,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    head_dim,
    group_size,
    FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    h = tl.program_id(1)
    seq = tl.program_id(2)
    seq_start = tl.load(cu_seqlens_ptr + seq)
    seq_len = tl.load(cu_seqlens_ptr + seq + 1) - seq_start
    m_start = pid_m * BLOCK_M
    # The grid is sized for the longest prompt; shorter ones have nothing to do here.
    if m_start >= seq_len:
        return
    kvh = h // group_size

    offs_m = m_start + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    mmask = offs_m < seq_len
    dmask = d < head_dim
    row0 = seq_start.to(tl.int64)
    q = tl.load(
        q_ptr + (row0 + offs_m)[:, None] * stride_qt + h * stride_qh + d[None, :],
        mask=mmask[:, None] & dmask[None, :],
        other=0.0,
    )
    qk_scale = sm_scale * 1.4426950408889634  # exp2 with log2(e) folded in

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # Causal: keys past the last query row of this tile are never needed.
    hi = tl.minimum(seq_len, m_start + BLOCK_M)
    for n0 in range(0, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        nmask = offs_n < seq_len
        kv_mask = nmask[:, None] & dmask[None, :]
        k = tl.load(
            k_ptr + (row0 + offs_n)[:, None] * stride_kt + kvh * stride_kh + d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        if FP32:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        keep = (offs_m[:, None] >= offs_n[None, :]) & nmask[None, :]
        s = tl.where(keep, s * qk_scale, float("-inf"))
        # Key 0 is visible to every row and sits in the first tile, so m_new is always finite.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_ptr + (row0 + offs_n)[:, None] * stride_vt + kvh * stride_vh + d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        if FP32:
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(
        out_ptr + (row0 + offs_m)[:, None] * stride_ot + h * stride_oh + d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=mmask[:, None] & dmask[None, :],
    )


def prefill_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor | None = None,
    max_seqlen: int | None = None,
    sm_scale: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal self-attention over packed prompts.

    Args:
        q: ``[tokens, n_heads, head_dim]``; k, v: ``[tokens, n_kv_heads, head_dim]`` (last dims
            contiguous; views of a fused qkv projection are fine).
        cu_seqlens: ``[num_seqs + 1]`` int32 prefix sums of prompt lengths (``[0, tokens]`` if None,
            i.e. one prompt).
        max_seqlen: longest prompt; computed from ``cu_seqlens`` (a device sync) if None.
        sm_scale: default ``1/sqrt(head_dim)``.
        out: optional ``[tokens, n_heads, head_dim]`` output buffer.

    Returns ``out`` in ``q.dtype``.
    """
    tokens, n_heads, head_dim = q.shape
    n_kv_heads = k.shape[1]
    assert k.shape == (tokens, n_kv_heads, head_dim) and v.shape == k.shape
    assert n_heads % n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads"
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1
    if cu_seqlens is None:
        cu_seqlens = torch.tensor([0, tokens], dtype=torch.int32, device=q.device)
        max_seqlen = tokens
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item())
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    if out is None:
        out = torch.empty_like(q)
    num_seqs = cu_seqlens.shape[0] - 1
    if tokens == 0 or num_seqs == 0 or max_seqlen == 0:
        return out
    block_d = triton.next_power_of_2(head_dim)
    # 64x64 tiles keep q, k, v and the fp32 accumulator in registers/shared memory up to d=128.
    block_m, block_n = (64, 64) if block_d <= 128 else (32, 32)
    if q.dtype == torch.float32:
        block_n = 32  # fp32 tiles are twice the bytes
    grid = (triton.cdiv(max_seqlen, block_m), n_heads, num_seqs)
    _prefill_kernel[grid](
        q,
        k,
        v,
        out,
        cu_seqlens,
        sm_scale,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        head_dim,
        n_heads // n_kv_heads,
        FP32=q.dtype == torch.float32,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        num_warps=4,
        num_stages=2,
    )
    return out


def prefill_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor | None = None,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Torch reference: per prompt, fp32 causal softmax attention with k/v heads repeated."""
    tokens, n_heads, head_dim = q.shape
    group = n_heads // k.shape[1]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    bounds = [0, tokens] if cu_seqlens is None else [int(x) for x in cu_seqlens]
    out = torch.empty_like(q)
    for start, end in itertools.pairwise(bounds):
        qs = q[start:end].float().transpose(0, 1)  # [h, t, d]
        ks = k[start:end].float().repeat_interleave(group, dim=1).transpose(0, 1)
        vs = v[start:end].float().repeat_interleave(group, dim=1).transpose(0, 1)
        scores = qs @ ks.transpose(1, 2) * sm_scale
        n = end - start
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        out[start:end] = (scores.softmax(-1) @ vs).transpose(0, 1).to(q.dtype)
    return out
