"""SwiGLU activation: ``silu(gate) * up`` in one pass.

The MLP's gate and up projections are often fused into one matmul producing ``[..., 2*ffn]``
(gate first, then up); this kernel reads either that tensor or two separate ones and writes
``[..., ffn]`` once, instead of materialising ``silu(gate)`` in between.
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-untyped]
import triton.language as tl  # type: ignore[import-untyped]


@triton.jit
def _swiglu_kernel(
    gate_ptr,
    up_ptr,
    out_ptr,
    n_cols,
    stride_gate,
    stride_up,
    stride_out,
    BLOCK: tl.constexpr,
):
    # Grid: (rows, column blocks). Columns are tiled so very wide ffn rows need no huge BLOCK.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(gate_ptr + row * stride_gate + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * stride_up + cols, mask=mask, other=0.0).to(tl.float32)
    # silu in fp32: g * sigmoid(g).
    y = g * tl.sigmoid(g) * u
    tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def swiglu(gate_or_fused: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * up``.

    Call as ``swiglu(gate, up)`` with two ``[..., ffn]`` tensors, or ``swiglu(gate_up)`` with one
    ``[..., 2*ffn]`` tensor whose first half is the gate and second half the up projection.
    Returns a new contiguous ``[..., ffn]`` tensor in the input dtype.
    """
    if up is None:
        fused = gate_or_fused
        assert fused.shape[-1] % 2 == 0, "fused gate/up needs an even last dim"
        ffn = fused.shape[-1] // 2
        f2 = fused.reshape(-1, fused.shape[-1])
        if f2.stride(-1) != 1:
            f2 = f2.contiguous()
        g2, u2 = f2[:, :ffn], f2[:, ffn:]
        out_shape = (*fused.shape[:-1], ffn)
    else:
        gate = gate_or_fused
        assert gate.shape == up.shape, "gate and up must have the same shape"
        ffn = gate.shape[-1]
        g2, u2 = gate.reshape(-1, ffn), up.reshape(-1, ffn)
        if g2.stride(-1) != 1:
            g2 = g2.contiguous()
        if u2.stride(-1) != 1:
            u2 = u2.contiguous()
        out_shape = tuple(gate.shape)
    n_rows = g2.shape[0]
    out = torch.empty((n_rows, ffn), dtype=g2.dtype, device=g2.device)
    if n_rows > 0 and ffn > 0:
        block = min(1024, triton.next_power_of_2(ffn))
        grid = (n_rows, triton.cdiv(ffn, block))
        _swiglu_kernel[grid](g2, u2, out, ffn, g2.stride(0), u2.stride(0), out.stride(0), BLOCK=block)
    return out.view(out_shape)


def swiglu_reference(gate_or_fused: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """Torch reference for :func:`swiglu` (fp32 math, result in the input dtype)."""
    if up is None:
        gate, up = gate_or_fused.chunk(2, dim=-1)
    else:
        gate = gate_or_fused
    return (torch.nn.functional.silu(gate.float()) * up.float()).to(gate.dtype)
