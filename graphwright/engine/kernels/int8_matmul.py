"""Weight-only int8 matmul with per-output-channel scales (``--quantize int8``).

``y = x @ (w_int8 * scale[:, None]).T (+ bias)``. Decoding at small batch is bound by reading
weights, so storing them as int8 halves the bytes per token against fp16/bf16. The int8 tile is
converted to the activation dtype in registers right before ``tl.dot`` (exact: |w| <= 127), and
the per-channel scale is applied once to the fp32 accumulator at the end, not per element.
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]
from torch import nn


@triton.jit
def _int8_matmul_kernel(
    x_ptr,
    w_ptr,
    scale_ptr,
    bias_ptr,
    y_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_xk,
    stride_wn,
    stride_wk,
    stride_ym,
    stride_yn,
    HAS_BIAS: tl.constexpr,
    FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mmask = offs_m < M
    nmask = offs_n < N
    x_ptrs = x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :] * stride_xk
    # W is [N, K]; read it as a [BLOCK_K, BLOCK_N] tile of W^T through the strides.
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :].to(tl.int64) * stride_wn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = offs_k + k0 < K
        x = tl.load(x_ptrs, mask=mmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=kmask[:, None] & nmask[None, :], other=0)
        if FP32:
            acc = tl.dot(x, w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(x, w.to(x.dtype), acc)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    scale = tl.load(scale_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
    acc = acc * scale[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + offs_m[:, None].to(tl.int64) * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mmask[:, None] & nmask[None, :])


def _block_sizes(m: int, n: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps), untuned heuristics.

    Small M (decode) is a weight-streaming GEMV: the minimum 16-row tile, narrow N tiles so
    there are enough programs to occupy every SM, and a long K step per load.
    """
    if m <= 16:
        return 16, 32 if n <= 8192 else 64, 256, 4
    if m <= 64:
        return 64, 64, 64, 4
    return 128, 128, 32, 8


def int8_matmul(
    x: torch.Tensor,
    w_int8: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ (w_int8 * scale[:, None]).T + bias`` without materialising the dequantized weight.

    Args:
        x: ``[..., K]`` activations (fp32, fp16 or bf16).
        w_int8: ``[N, K]`` int8 weight (the nn.Linear layout).
        scale: ``[N]`` per-output-channel scales (any float dtype; applied in fp32).
        bias: optional ``[N]``.

    Returns ``[..., N]`` in ``x.dtype``.
    """
    assert w_int8.dtype == torch.int8 and w_int8.dim() == 2
    n, k = w_int8.shape
    assert x.shape[-1] == k, f"x last dim {x.shape[-1]} != weight in_features {k}"
    assert scale.shape == (n,)
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:
        return y.view(*x.shape[:-1], n)
    bm, bn, bk, warps = _block_sizes(m, n)
    bk = min(bk, max(16, triton.next_power_of_2(k)))
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn))
    _int8_matmul_kernel[grid](
        x2,
        w_int8,
        scale,
        bias if bias is not None else scale,  # dummy pointer when HAS_BIAS is False
        y,
        m,
        n,
        k,
        x2.stride(0),
        x2.stride(1),
        w_int8.stride(0),
        w_int8.stride(1),
        y.stride(0),
        y.stride(1),
        HAS_BIAS=bias is not None,
        FP32=x.dtype == torch.float32,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_K=bk,
        num_warps=warps,
        num_stages=3,
    )
    return y.view(*x.shape[:-1], n)


def int8_matmul_reference(
    x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Torch reference: dequantize in fp32, matmul, cast back to ``x.dtype``."""
    w = w_int8.float() * scale.float()[:, None]
    y = x.float() @ w.T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``w ≈ w_int8 * scale[:, None]``.

    ``scale = max|w[row]| / 127`` (fp32, floored so all-zero rows do not divide by zero);
    values are rounded to nearest and clamped to [-127, 127] (never -128, so the range is
    symmetric). Returns ``(w_int8 [N, K] int8, scale [N] fp32)``.
    """
    assert w.dim() == 2, "expects an [out_features, in_features] weight"
    wf = w.detach().float()
    scale = (wf.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    w_int8 = torch.round(wf / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return w_int8.contiguous(), scale


class Int8Linear(nn.Module):
    """Drop-in for ``nn.Linear`` holding an int8 weight and per-channel scales.

    ``forward`` runs the Triton kernel when the input is on CUDA (or under ``TRITON_INTERPRET``),
    else the torch reference, so the same module works on the CPU path.
    """

    w_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, w_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = w_int8.shape
        self.register_buffer("w_int8", w_int8)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale.to(x.dtype) if x.dtype != torch.float32 else self.scale
        if x.is_cuda or _interpreting():
            return int8_matmul(x, self.w_int8, scale, self.bias)
        return int8_matmul_reference(x, self.w_int8, scale, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def quantize_linear(linear: nn.Linear) -> Int8Linear:
    """Quantize an ``nn.Linear`` to an :class:`Int8Linear` on the same device (bias kept as is)."""
    w_int8, scale = quantize_int8(linear.weight)
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    return Int8Linear(w_int8, scale, bias)
