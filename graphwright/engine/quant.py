"""Weight-only quantized linears (``--quantize int8`` and ``--quantize int4``).

Only the weights are stored small, which is what a batch-1 decode step on a CPU waits for. On a
CPU each linear has two paths:

- A decode step (fewer than 32 rows) runs our C++ kernel (``cpu_kernels/qmatmul.cpp``), which
  quantizes the activations to int8 per block of 32 inside it, as llama.cpp does, and multiplies
  with AVX-512 VNNI integer dots: 2-3x torch's weight-only kernels per call here, 1.2-1.35x on a
  whole compiled int4 step (the weights then come from DRAM). With ``kernels="torch"``, or where
  it cannot be built, torch's weight-only kernels run instead (bfloat16 activations).
- A prompt (32 rows or more) is compute-bound, so the weights are widened to bfloat16 once per
  call and the AMX/AVX-512 bf16 matmul does the work. For int4 the widening is a C++ kernel too
  (``cpu_kernels/dequantize.cpp``: 16 ms for SmolLM2's layers, where torch ops took 270-310 ms; a
  40-token prompt 105 ms instead of 315).

Per-block int8 activations cost a little accuracy (int4, top-1 agreement with float32 0.96 on the
decode path against 0.98 with bfloat16 activations; llama.cpp 0.976), because an outlier channel
only coarsens its own block of 32. Per-token int8 activations (fbgemm's dynamic int8 linear,
W8A8) were tried and dropped: SmolLM2's activations carry outlier channels (the down projection's
input worst), and they took top-1 agreement from 0.96 to 0.56, still 0.87-0.91 with SmoothQuant
scaling and the outlier channels split off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwright.engine import cpu_kernels


class Int8Linear(nn.Module):
    """Weight-only int8 (one scale per output row); activations stay in the model's dtype."""

    use_kernels = False  # set by Transformer.set_kernels: the Triton int8 matmul
    # Rows at which a CPU matmul stops being bound by the weight reads (see the module docstring).
    prefill_rows = 32

    def __init__(self, weight: Tensor, cpu_kernel: bool = True) -> None:
        super().__init__()
        w = weight.float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.weight: Tensor
        self.scales: Tensor
        self.scales_bf16: Tensor
        self.register_buffer("weight", torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales)
        self.register_buffer("scales_bf16", scales.to(torch.bfloat16))
        self.kernel = _kernel_weight(weight, cpu_kernel, lambda: cpu_kernels.pack_int8(self.weight, scales))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.use_kernels:  # dequantized tile by tile inside the kernel, scales applied in fp32
            from graphwright.engine import kernels  # triton is optional: imported on use

            scales = self.scales if x.dtype == torch.float32 else self.scales.to(x.dtype)
            out = kernels.int8_matmul(x2, self.weight, scales)
        elif self.kernel is not None and x2.shape[0] < self.prefill_rows:
            out = _q_matmul(x2, self.kernel)
        elif x.device.type == "cpu" and x2.shape[0] >= self.prefill_rows:
            w = self.weight.to(torch.bfloat16) * self.scales_bf16[:, None]
            out = F.linear(x2.to(torch.bfloat16), w)
        elif x.device.type == "cpu":
            # The CPU kernel is vectorized for bfloat16 activations only (fp32 runs ~10x slower).
            out = torch.ops.aten._weight_int8pack_mm(x2.to(torch.bfloat16), self.weight, self.scales_bf16)
        else:
            out = F.linear(x2, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        return out.to(x.dtype).reshape(*shape[:-1], -1)


class Int4Linear(nn.Module):
    """Weight-only 4-bit in groups of 32 input channels: ``w = q * scale + min``, ``q`` in 0..15.

    This is GGUF's Q4_1 layout (one scale and one minimum per 32 weights), and the grid is found
    the way Q4_1 finds it (the group's min and max), so a Q4_1 file's matrices, dequantized to
    float32 by the loader, come back here as exactly the numbers the file holds: for SmolLM2 the
    int4 model *is* the GGUF model (its activations: int8 per block in decode steps on our kernel,
    as llama.cpp's; bfloat16 in prompts and on torch's kernels). Other weights are quantized with
    the same rule (round to nearest on the group's min..max grid).

    The CPU decode path is our kernel, or else torch's int4 kernel (``_weight_int4pack_mm_for_cpu``,
    bfloat16 in and out, scales and offsets rounded to bfloat16); elsewhere the weights are
    dequantized per call.
    """

    group_size = 32
    prefill_rows = Int8Linear.prefill_rows

    def __init__(self, weight: Tensor, cpu_kernel: bool = True) -> None:
        super().__init__()
        n, k = weight.shape
        g = self.group_size
        if k % g:
            raise ValueError(f"int4 needs input features in groups of {g}; this weight is [{n}, {k}]")
        groups = weight.float().reshape(n, k // g, g)
        lo = groups.amin(dim=-1)
        scale = (groups.amax(dim=-1) - lo) / 15.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: q = 0
        q = torch.round((groups - lo[..., None]) / safe[..., None]).clamp(0, 15).reshape(n, k)
        self.q: Tensor
        self.scales: Tensor
        self.mins: Tensor
        self.register_buffer("q", q.to(torch.uint8))  # unpacked: prompts and non-CPU devices
        self.register_buffer("scales", scale)  # [n, k / 32] float32
        self.register_buffer("mins", lo)
        # torch's int4 kernel's layout, where ours does not run (buffers, so that an exported
        # decode step finds them by name)
        self.packed: Tensor | None
        self.scales_and_zeros: Tensor | None
        self.register_buffer("packed", None)
        self.register_buffer("scales_and_zeros", None)
        self.kernel = _kernel_weight(weight, cpu_kernel, lambda: cpu_kernels.pack_int4(self.q, scale, lo))
        if weight.device.type == "cpu" and self.kernel is None:
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
            # The kernel computes (q - 8) * scale + zero, so zero = min + 8 * scale.
            zeros = lo + 8.0 * scale
            both = torch.stack((scale.t(), zeros.t()), dim=-1)  # [k / 32, n, 2]
            self.scales_and_zeros = both.to(torch.bfloat16).contiguous()

    def dequantize(self) -> Tensor:
        """The float32 weight ``[out, in]`` these 4-bit numbers stand for."""
        n, k = self.q.shape
        groups = self.q.view(n, k // self.group_size, self.group_size).float()
        return (groups * self.scales[..., None] + self.mins[..., None]).view(n, k)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        decode = x2.shape[0] < self.prefill_rows
        if self.kernel is not None and decode:
            out = _q_matmul(x2, self.kernel)
        elif self.packed is not None and self.scales_and_zeros is not None and decode:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.to(torch.bfloat16), self.packed, self.group_size, self.scales_and_zeros
            )
        elif self.kernel is not None:  # a prompt: widened in one pass of the C++ kernel
            k = self.kernel
            wide = torch.ops.graphwright.q_dequantize(k.codes, k.scales, k.mins)
            out = F.linear(x2.to(torch.bfloat16), wide)
        else:
            dtype = torch.bfloat16 if x.device.type == "cpu" else x.dtype
            out = F.linear(x2.to(dtype), self.dequantize().to(dtype))
        return out.to(x.dtype).reshape(*shape[:-1], -1)


def _kernel_weight(
    weight: Tensor, wanted: bool, pack: Callable[[], cpu_kernels.QuantizedWeight]
) -> cpu_kernels.QuantizedWeight | None:
    """The weight in our CPU kernel's layout, where that kernel runs (and runs fast) for it."""
    if not wanted or weight.device.type != "cpu" or weight.shape[1] % 64 or not cpu_kernels.has_vnni():
        return None
    return pack()


def _q_matmul(x: Tensor, weight: cpu_kernels.QuantizedWeight) -> Tensor:
    # The op itself, not cpu_kernels.q_matmul: its availability check is a Python call that
    # Dynamo would trace into every compiled decode step (here the kernel is known to be built).
    return torch.ops.graphwright.q_matmul(x.float(), weight.codes, weight.scales, weight.mins, weight.bits)
