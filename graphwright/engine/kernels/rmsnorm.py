"""RMSNorm fused with the residual add.

A transformer block does ``h = x + residual; out = rmsnorm(h) * weight`` twice per layer. Doing
both in one kernel reads ``x`` and ``residual`` once and writes ``h`` and ``out`` once, instead of
the three round trips through memory that separate torch ops take.
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]


@triton.jit
def _rmsnorm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    new_res_ptr,
    n_cols,
    stride_x,
    stride_res,
    stride_out,
    stride_new_res,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= n_cols, so the whole row sits in registers.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        # Add in the storage dtype, as the unfused torch code does, so the stream rounds the same.
        x += tl.load(res_ptr + row * stride_res + cols, mask=mask, other=0.0)
    tl.store(new_res_ptr + row * stride_new_res + cols, x, mask=mask)
    # Statistics in fp32 whatever the storage dtype (masked lanes are 0 and do not count).
    h = x.to(tl.float32)
    mean_sq = tl.sum(h * h, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(mean_sq + eps)
    # Hugging Face order: normalise, round to the storage dtype, then scale by the weight.
    normed = (h * rstd).to(x_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = normed * w
    tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def rmsnorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add + RMSNorm.

    Args:
        x: ``[..., hidden]`` activations.
        weight: ``[hidden]`` norm weight.
        eps: added to the mean square before the reciprocal square root.
        residual: optional ``[..., hidden]`` residual stream, same shape and dtype as ``x``.

    Returns:
        ``(out, new_residual)`` where ``new_residual = x + residual`` (added in ``x.dtype``; a copy
        of ``x`` when ``residual`` is None) and
        ``out = weight * (new_residual * rsqrt(mean(new_residual**2) + eps)).to(x.dtype)`` with the
        statistics in fp32: the rounding of Hugging Face's ``LlamaRMSNorm`` and the engine's torch
        model. Both are shaped and typed like ``x``. Inputs are not modified.
    """
    hidden = x.shape[-1]
    assert weight.shape == (hidden,), f"weight must be [{hidden}], got {tuple(weight.shape)}"
    x2 = x.reshape(-1, hidden)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if residual is not None:
        assert residual.shape == x.shape and residual.dtype == x.dtype, "residual must match x"
        r2 = residual.reshape(-1, hidden)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()
    else:
        r2 = x2  # never read (HAS_RESIDUAL is False); any valid pointer will do
    weight = weight.contiguous()
    out = torch.empty_like(x2)
    new_res = torch.empty_like(x2)
    n_rows = x2.shape[0]
    if n_rows > 0:
        block = triton.next_power_of_2(hidden)
        # Wider rows need more warps so each thread holds a bounded number of elements.
        num_warps = 4 if block <= 2048 else 8 if block <= 8192 else 16
        _rmsnorm_kernel[(n_rows,)](
            x2,
            r2,
            weight,
            out,
            new_res,
            hidden,
            x2.stride(0),
            r2.stride(0),
            out.stride(0),
            new_res.stride(0),
            eps,
            HAS_RESIDUAL=residual is not None,
            BLOCK=block,
            num_warps=num_warps,
        )
    return out.view(x.shape), new_res.view(x.shape)


def rmsnorm_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference for :func:`rmsnorm`: the unfused ops of Hugging Face's ``LlamaRMSNorm``."""
    new_residual = x if residual is None else x + residual
    h = new_residual.float()
    normed = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return (weight.float() * normed.float()).to(x.dtype), new_residual.clone()
