"""Per-row temperature / top-k / top-p sampling with a seeded draw, one program per row.

No sort. Both filters are *thresholds* on the logit value: top-k keeps the tokens whose logit is
>= the k-th largest (ties kept, as Hugging Face's ``TopKLogitsWarper`` does); top-p then keeps
the smallest set of the highest-probability survivors whose mass reaches ``top_p`` (again as a
threshold, so tokens tied at the boundary are all kept). Each threshold is found exactly by a
k-ary search over the order-preserving integer image of the fp32 logits: every pass over the
vocabulary tests 16 (long rows) to 1024 (short rows) candidate thresholds at once, so the 32-bit
range is resolved in 4-8 passes instead of 32. The key of a logit is its fp32 bits read as int32
with the magnitude bits of negatives flipped, ``bits ^ ((bits >> 31) & 0x7FFFFFFF)``; it is
written inline rather than as a jit helper because each helper call is costly in the interpreter.

The draw is an exponential race (Gumbel-max): ``argmax_i(logit_i / T + G_i)`` with
``G_i = -log(-log(U_i))`` samples ``i`` with probability ``softmax(logit / T)_i``; restricted to
the kept tokens it samples the filtered, renormalised distribution without ever normalising.
``U_i = tl.rand(seed, i)`` (Philox), so a (row seed, logits) pair always gives the same token.
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]

# The k-ary search tests NUM_CAND candidate thresholds against a BLOCK-wide chunk at once: a
# [NUM_CAND, BLOCK] tile. Keep it at 16K elements (registers), so short rows get more candidates
# and fewer passes (1024 candidates: 32 bits in ~4 passes; 16 candidates: ~8 passes).
_TILE_BUDGET: int = 16384


@triton.jit
def _search_threshold(
    row_ptr,
    vocab,
    lo,
    hi,
    target,
    row_max,
    inv_temp,
    USE_MASS: tl.constexpr,
    BLOCK: tl.constexpr,
    NUM_CAND: tl.constexpr,
):
    """Largest key t in [lo, hi] with f(t) >= target, f(t) = count (or softmax mass) of keys >= t.

    f is non-increasing in t and f(lo) >= target by construction, so the answer exists. Each
    round evaluates f at NUM_CAND evenly spaced candidates in one pass over the row and keeps the
    sub-range after the last candidate that still satisfies the target.
    """
    cand_idx = tl.arange(0, NUM_CAND)
    while lo < hi:
        step = (hi - lo + NUM_CAND) // NUM_CAND  # ceil((hi - lo + 1) / NUM_CAND), >= 1
        cand = lo + cand_idx.to(tl.int64) * step
        total = tl.zeros([NUM_CAND], dtype=tl.float32)
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < vocab
            x = tl.load(row_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
            bits = x.to(tl.int32, bitcast=True)
            key = tl.where(mask, (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(tl.int64), -(2**40))
            if USE_MASS:
                w = tl.where(mask, tl.exp((x - row_max) * inv_temp), 0.0)
            else:
                w = tl.where(mask, 1.0, 0.0)
            hit = key[None, :] >= cand[:, None]
            total += tl.sum(tl.where(hit, w[None, :], 0.0), axis=1)
        ok = (total >= target) & (cand <= hi)
        best = tl.max(tl.where(ok, cand_idx, 0), axis=0)  # candidate 0 (= lo) always qualifies
        lo = lo + best.to(tl.int64) * step
        hi = tl.minimum(hi, lo + step - 1)
    return lo


@triton.jit
def _sampling_kernel(
    logits_ptr,
    temperature_ptr,
    top_k_ptr,
    top_p_ptr,
    seed_ptr,
    out_ptr,
    vocab,
    stride_row,
    BLOCK: tl.constexpr,
    NUM_CAND: tl.constexpr,
):
    row = tl.program_id(0)
    row_ptr = logits_ptr + row.to(tl.int64) * stride_row
    temperature = tl.load(temperature_ptr + row).to(tl.float32)
    top_k = tl.load(top_k_ptr + row).to(tl.int64)
    top_p = tl.load(top_p_ptr + row).to(tl.float32)
    seed = tl.load(seed_ptr + row)

    # Pass 1: max (with its first index: the greedy answer) and min.
    best_val = float("-inf")
    best_idx = 0
    row_min = float("inf")
    for start in range(0, vocab, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < vocab
        x = tl.load(row_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
        cmax = tl.max(x, axis=0)
        cidx = tl.argmax(x, axis=0) + start
        take = cmax > best_val  # strict: ties keep the earlier chunk, like torch.argmax
        best_idx = tl.where(take, cidx, best_idx)
        best_val = tl.where(take, cmax, best_val)
        row_min = tl.minimum(row_min, tl.min(tl.where(mask, x, float("inf")), axis=0))
    token = tl.cast(best_idx, tl.int64)

    if temperature > 0:
        inv_temp = 1.0 / temperature
        max_bits = tl.cast(best_val, tl.int32, bitcast=True)
        max_key = (max_bits ^ ((max_bits >> 31) & 0x7FFFFFFF)).to(tl.int64)
        min_bits = tl.cast(row_min, tl.int32, bitcast=True)
        threshold = (min_bits ^ ((min_bits >> 31) & 0x7FFFFFFF)).to(tl.int64)  # keeps everything
        if (top_k > 0) & (top_k < vocab):
            threshold = _search_threshold(
                row_ptr,
                vocab,
                threshold,
                max_key,
                top_k.to(tl.float32),
                best_val,
                inv_temp,
                False,
                BLOCK,
                NUM_CAND,
            )
        if top_p < 1.0:
            # Mass of the top-k survivors (unnormalised, relative to exp(max)).
            kept_mass = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, vocab, BLOCK):
                offs = start + tl.arange(0, BLOCK)
                mask = offs < vocab
                x = tl.load(row_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
                bits = x.to(tl.int32, bitcast=True)
                keep = mask & ((bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(tl.int64) >= threshold)
                kept_mass += tl.where(keep, tl.exp((x - best_val) * inv_temp), 0.0)
            target = top_p * tl.sum(kept_mass, axis=0)
            threshold = _search_threshold(
                row_ptr, vocab, threshold, max_key, target, best_val, inv_temp, True, BLOCK, NUM_CAND
            )
        # Final pass: Gumbel-max over the kept tokens.
        best_score = float("-inf")
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < vocab
            x = tl.load(row_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
            bits = x.to(tl.int32, bitcast=True)
            keep = mask & ((bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(tl.int64) >= threshold)
            u = tl.rand(seed, offs)
            # u == 0 gives -inf (never chosen); u < 1 always, so no +inf.
            score = tl.where(keep, x * inv_temp - tl.log(-tl.log(u)), float("-inf"))
            cmax = tl.max(score, axis=0)
            cidx = tl.argmax(score, axis=0) + start
            take = cmax > best_score
            token = tl.where(take, cidx.to(tl.int64), token)
            best_score = tl.where(take, cmax, best_score)
    tl.store(out_ptr + row, token)


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    seeds: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row.

    Args:
        logits: ``[batch, vocab]`` (fp32/fp16/bf16; last dim contiguous).
        temperature: ``[batch]`` float; ``<= 0`` means greedy (argmax, first index on ties).
        top_k: ``[batch]`` int; ``<= 0`` or ``>= vocab`` disables it.
        top_p: ``[batch]`` float in (0, 1]; ``1.0`` disables it. Applied after top-k, on the
            renormalised top-k distribution (Hugging Face order: temperature, top-k, top-p).
        seeds: ``[batch]`` int64 Philox seeds. Same seed and logits give the same token; the
            caller varies it per step (e.g. ``request_seed * 1_000_003 + step``).
        out: optional ``[batch]`` int64 output.

    Returns ``out``: ``[batch]`` int64 token ids.
    """
    assert logits.dim() == 2 and logits.stride(-1) == 1
    batch, vocab = logits.shape
    for name, t in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("seeds", seeds)):
        assert t.shape == (batch,), f"{name} must be [batch]"
    if out is None:
        out = torch.empty(batch, dtype=torch.int64, device=logits.device)
    if batch == 0:
        return out
    block = min(1024, triton.next_power_of_2(vocab))
    _sampling_kernel[(batch,)](
        logits,
        temperature.contiguous(),
        top_k.contiguous(),
        top_p.contiguous(),
        seeds.contiguous(),
        out,
        vocab,
        logits.stride(0),
        BLOCK=block,
        NUM_CAND=max(16, min(1024, _TILE_BUDGET // block)),
        num_warps=8,
    )
    return out


def filtered_probs_reference(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """Torch reference: the distribution :func:`sample` draws from, ``[batch, vocab]`` fp32.

    Greedy rows (temperature <= 0) get a one-hot on the first argmax. Same threshold semantics
    as the kernel (ties at a top-k / top-p boundary are kept).
    """
    batch, vocab = logits.shape
    probs = torch.zeros(batch, vocab, dtype=torch.float32, device=logits.device)
    for r in range(batch):
        x = logits[r].float()
        t, k, p = float(temperature[r]), int(top_k[r]), float(top_p[r])
        if t <= 0:
            probs[r, int(x.argmax())] = 1.0
            continue
        keep = torch.ones(vocab, dtype=torch.bool, device=x.device)
        if 0 < k < vocab:
            keep &= x >= torch.topk(x, k).values[-1]
        w = torch.where(keep, torch.exp((x - x.max()) / t), torch.zeros_like(x))
        if p < 1.0:
            sorted_w, _ = torch.sort(w, descending=True)
            cum = sorted_w.cumsum(0)
            n_keep = int((cum < p * cum[-1]).sum()) + 1  # smallest prefix with mass >= p
            keep &= w >= sorted_w[min(n_keep, vocab) - 1]
            w = torch.where(keep, w, torch.zeros_like(w))
        probs[r] = w / w.sum()
    return probs
