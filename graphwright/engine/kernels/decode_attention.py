"""Paged decode attention (one new query token per sequence), flash-decoding split-K.

The KV cache is paged: ``k_cache``/``v_cache`` are ``[num_blocks, block_size, n_kv_heads, head_dim]``
and ``block_tables[b, i]`` is the physical block holding tokens ``i*block_size ..`` of sequence ``b``.

At batch 1 a single long sequence would give one program per kv head, too few to fill a GPU, so
the sequence is cut into ``num_splits`` chunks processed in parallel (stage 1, each writing a
partial softmax: normalised output and log-sum-exp), and a second kernel merges the chunks
(stage 2). All query heads sharing a kv head are handled by the same stage-1 program, so each K/V
element is read from memory once per split (grouped-query attention costs no extra traffic).
"""

from __future__ import annotations

import math

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]


@triton.jit
def _decode_split_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    sm_scale,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_bt,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    head_dim,
    group_size,
    block_size,
    tokens_per_split,
    FP32: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b)
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, seq_len)

    g = tl.arange(0, BLOCK_G)
    heads = kvh * group_size + g
    gmask = g < group_size
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    # BLOCK_G >= 16 rows (padded with zero queries) so tl.dot compiles on GPU; padded rows are
    # computed but never stored.
    q = tl.load(
        q_ptr + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + d[None, :],
        mask=gmask[:, None] & dmask[None, :],
        other=0.0,
    )
    # exp2 is cheaper than exp: fold log2(e) into the scale once.
    qk_scale = sm_scale * 1.4426950408889634

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    bt_row = block_tables_ptr + b.to(tl.int64) * stride_bt
    for n0 in range(start, end, BLOCK_N):
        toks = n0 + tl.arange(0, BLOCK_N)
        tmask = toks < end
        # Logical token -> (physical block, slot): any block_size works, not only BLOCK_N.
        phys = tl.load(bt_row + toks // block_size, mask=tmask, other=0).to(tl.int64)
        slot = toks % block_size
        kv_mask = tmask[:, None] & dmask[None, :]
        k = tl.load(
            k_cache_ptr
            + phys[:, None] * stride_kb
            + slot[:, None] * stride_ks
            + kvh * stride_kh
            + d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        if FP32:
            s = tl.dot(q, tl.trans(k.to(q.dtype)), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k.to(q.dtype)))
        s = tl.where(tmask[None, :], s * qk_scale, float("-inf"))
        # Online softmax (base 2). The first tile always has a valid token, so m_new is finite.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_cache_ptr
            + phys[:, None] * stride_vb
            + slot[:, None] * stride_vs
            + kvh * stride_vh
            + d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        if FP32:
            acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype))
        m_i = m_new

    # An empty split (start >= seq_len) contributes lse = -inf and o = 0 to the merge.
    has = l_i > 0
    o = tl.where(has[:, None], acc / tl.where(has, l_i, 1.0)[:, None], 0.0)
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))  # base-2 lse
    mo = (
        mid_o_ptr
        + b.to(tl.int64) * stride_mo_b
        + heads[:, None] * stride_mo_h
        + split * stride_mo_s
        + d[None, :]
    )
    tl.store(mo, o, mask=gmask[:, None] & dmask[None, :])
    tl.store(mid_lse_ptr + b.to(tl.int64) * stride_ml_b + heads * stride_ml_h + split, lse, mask=gmask)


@triton.jit
def _decode_reduce_kernel(
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    stride_ob,
    stride_oh,
    num_splits,
    head_dim,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # One program per (sequence, query head): merge the splits' partial softmaxes.
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    smask = s < num_splits
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    lse = tl.load(mid_lse_ptr + b * stride_ml_b + h * stride_ml_h + s, mask=smask, other=float("-inf"))
    o = tl.load(
        mid_o_ptr + b * stride_mo_b + h * stride_mo_h + s[:, None] * stride_mo_s + d[None, :],
        mask=smask[:, None] & dmask[None, :],
        other=0.0,
    )
    m = tl.max(lse, axis=0)
    # Guard seq_len == 0 (all splits empty): output zeros rather than NaN.
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)
    denom = tl.sum(w, axis=0)
    out = tl.sum(o * w[:, None], axis=0) / tl.where(denom > 0, denom, 1.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=dmask)


def default_num_splits(batch: int, n_kv_heads: int, max_context: int, block_n: int = 32) -> int:
    """Enough splits for ~256 stage-1 programs, but at least ``block_n * 4`` tokens per split."""
    want = max(1, triton.cdiv(256, batch * n_kv_heads))
    return max(1, min(want, triton.cdiv(max_context, block_n * 4), 64))


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
    num_splits: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of one new query token per sequence over its paged KV cache.

    Args:
        q: ``[batch, n_heads, head_dim]`` (last dim contiguous).
        k_cache, v_cache: ``[num_blocks, block_size, n_kv_heads, head_dim]`` (last dim contiguous).
            The new token's K/V must already be written into the cache.
        block_tables: ``[batch, max_blocks]`` int32 physical block ids.
        seq_lens: ``[batch]`` int32 lengths *including* the new token (must be >= 1; a 0 gives zeros).
        sm_scale: softmax scale, default ``1/sqrt(head_dim)``.
        num_splits: split-K factor. Depends only on shapes by default (never on ``seq_lens``
            values), so the launch is CUDA-graph capturable; pass a fixed value to pin it.
        out: optional ``[batch, n_heads, head_dim]`` output buffer.

    ``n_heads`` must be a multiple of ``n_kv_heads`` (GQA/MQA). Returns ``out`` in ``q.dtype``.
    """
    batch, n_heads, head_dim = q.shape
    _, block_size, n_kv_heads, kd = k_cache.shape
    assert kd == head_dim and v_cache.shape == k_cache.shape
    assert n_heads % n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads"
    assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1
    assert block_tables.shape[0] == batch and seq_lens.shape == (batch,)
    group = n_heads // n_kv_heads
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    max_context = block_tables.shape[1] * block_size
    block_n = 32
    if num_splits is None:
        num_splits = default_num_splits(batch, n_kv_heads, max_context, block_n)
    # Split boundaries are multiples of BLOCK_N so tiles never straddle two splits.
    tokens_per_split = triton.cdiv(triton.cdiv(max_context, num_splits), block_n) * block_n
    if out is None:
        out = torch.empty_like(q)
    if batch == 0:
        return out
    mid_o = torch.empty((batch, n_heads, num_splits, head_dim), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((batch, n_heads, num_splits), dtype=torch.float32, device=q.device)
    block_d = triton.next_power_of_2(head_dim)
    _decode_split_kernel[(batch, n_kv_heads, num_splits)](
        q,
        k_cache,
        v_cache,
        block_tables,
        seq_lens,
        mid_o,
        mid_lse,
        sm_scale,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        block_tables.stride(0),
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        head_dim,
        group,
        block_size,
        tokens_per_split,
        FP32=q.dtype == torch.float32,
        BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        num_warps=4,
        num_stages=2,
    )
    _decode_reduce_kernel[(batch, n_heads)](
        mid_o,
        mid_lse,
        out,
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        out.stride(0),
        out.stride(1),
        num_splits,
        head_dim,
        BLOCK_S=triton.next_power_of_2(num_splits),
        BLOCK_D=block_d,
    )
    return out


def decode_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Torch reference: gather each sequence's blocks, then plain softmax attention (fp32)."""
    batch, n_heads, head_dim = q.shape
    _, block_size, n_kv_heads, _ = k_cache.shape
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    out = torch.empty_like(q)
    for b in range(batch):
        length = int(seq_lens[b])
        n_blocks = -(-length // block_size)
        ids = block_tables[b, :n_blocks].long()
        k = k_cache[ids].reshape(-1, n_kv_heads, head_dim)[:length].float()
        v = v_cache[ids].reshape(-1, n_kv_heads, head_dim)[:length].float()
        k = k.repeat_interleave(n_heads // n_kv_heads, dim=1)  # [len, n_heads, d]
        v = v.repeat_interleave(n_heads // n_kv_heads, dim=1)
        scores = torch.einsum("hd,thd->ht", q[b].float(), k) * sm_scale
        out[b] = torch.einsum("ht,thd->hd", scores.softmax(-1), v).to(q.dtype)
    return out
