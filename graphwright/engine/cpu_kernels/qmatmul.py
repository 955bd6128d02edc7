"""The quantized CPU matmul (``qmatmul.cpp``): its build, its weight layouts, its torch reference;
and the 4-bit weight's widening to bfloat16 for prompts (``dequantize.cpp``), built with it.

``q_matmul(x, weights)`` computes ``x @ W^T`` for a weight stored in blocks of 32 (a scale and a
minimum per block; 4-bit codes, GGUF's Q4_1, or 8-bit ones) with ``x`` quantized to int8 per block
of 32 on the fly, as llama.cpp does (Q8_1). The C++ source is compiled once per machine with
torch's extension builder and cached (``GRAPHWRIGHT_CACHE``, default ``~/.cache/graphwright``);
``make setup`` builds it, so a first request never waits for a compiler. Without a compiler, or
with ``GRAPHWRIGHT_CPU_KERNELS=0``, ``available()`` is False and the engine keeps torch's kernels.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn

from graphwright.engine.config import cache_root

log = logging.getLogger(__name__)

BLOCK = 32  # weights (and activations) per scale
_SOURCES = [Path(__file__).with_name(f"{name}.cpp") for name in ("qmatmul", "dequantize", "attention")]


class QuantizedWeight(nn.Module):
    """A weight ``[n, k]`` as the kernel reads it.

    4 bits: ``w = scales * code + mins`` per block of 32, scales and mins float16 ``[n, k / 32]``
    (GGUF's Q4_1 holds the same numbers). 8 bits: ``w = scales * (code - 128)``, one float32
    scale per row ``[n]``, and ``mins`` empty.

    A module, so that its tensors are buffers with names (``layers.0.mlp.down.kernel.codes``):
    torch.compile keeps buffers' sizes static by itself, and an exported decode step
    (``exported.py``) is handed the model's own tensors by those names.
    """

    codes: Tensor  # uint8 [n, k / 2] (4 bits, two codes a byte) or [n, k] (8 bits)
    scales: Tensor
    mins: Tensor

    def __init__(self, codes: Tensor, scales: Tensor, mins: Tensor, bits: int) -> None:
        super().__init__()
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("mins", mins)
        self.bits = bits

    @property
    def shape(self) -> tuple[int, int]:
        n = self.codes.shape[0]
        return n, self.codes.shape[1] * (2 if self.bits == 4 else 1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, shape={self.shape}"


def pack_int4(codes: Tensor, scales: Tensor, mins: Tensor) -> QuantizedWeight:
    """4-bit codes ``[n, k]`` (0..15) in the kernel's layout: per 64 codes, byte j = c[j] | c[32+j] << 4.

    Scales and minimums are stored as float16, as GGUF's Q4_1 stores them: exact for a Q4_1 file's
    weights, and for others a relative change of at most 2^-11 in the dequantized weight.
    """
    n, k = codes.shape
    if k % 64:
        raise ValueError(f"the CPU kernel needs input features in multiples of 64; this weight is [{n}, {k}]")
    halves = codes.to(torch.uint8).reshape(n, k // 64, 2, 32)
    packed = (halves[:, :, 0] | (halves[:, :, 1] << 4)).reshape(n, k // 2).contiguous()
    return QuantizedWeight(packed, scales.half().contiguous(), mins.half().contiguous(), 4)


def pack_int8(weight: Tensor, row_scales: Tensor) -> QuantizedWeight:
    """Int8 weights with one scale per row, as unsigned codes ``q + 128``.

    VNNI multiplies unsigned by signed bytes; the offset makes the weight the unsigned side, and
    ``128 * sum(x)`` (x as quantized, known per block) takes it back out exactly.
    """
    n, k = weight.shape
    if k % 64:
        raise ValueError(f"the CPU kernel needs input features in multiples of 64; this weight is [{n}, {k}]")
    codes = (weight.to(torch.int16) + 128).to(torch.uint8).contiguous()
    return QuantizedWeight(codes, row_scales.float().contiguous(), torch.empty(0), 8)


def quantize_activations(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` [m, k] as int8 per block of 32 (``q``, as float) and the blocks' scales ``d`` [m, k / 32].

    The same float32 operations as the kernel (``round(x * (1 / d))``, half to even), so the
    integers match it exactly.
    """
    m, k = x.shape
    blocks = x.float().reshape(m, k // BLOCK, BLOCK)
    d = blocks.abs().amax(dim=-1) / 127.0
    inv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
    q = torch.round(blocks * inv[..., None])
    return q.reshape(m, k), d


def unpack(weight: QuantizedWeight) -> Tensor:
    """The integer codes ``[n, k]`` (as int64) behind a packed weight."""
    n, k = weight.shape
    if weight.bits == 8:
        return weight.codes.long()
    pairs = weight.codes.reshape(n, k // 64, 32)
    return torch.stack((pairs & 0x0F, pairs >> 4), dim=2).reshape(n, k).long()


def dequantize(weight: QuantizedWeight) -> Tensor:
    """The float32 weight ``[n, k]`` a packed weight stands for."""
    n, k = weight.shape
    codes = unpack(weight).float()
    if weight.bits == 8:
        return weight.scales[:, None] * (codes - 128)
    blocks = codes.reshape(n, k // BLOCK, BLOCK)
    return (blocks * weight.scales.float()[..., None] + weight.mins.float()[..., None]).reshape(n, k)


def q_matmul_reference(x: Tensor, weight: QuantizedWeight) -> Tensor:
    """What the kernel computes, in float64: x quantized per block, exact integer dots, then scales."""
    m, k = x.shape
    q, d = quantize_activations(x)
    x_used = (q.reshape(m, k // BLOCK, BLOCK) * d[..., None]).reshape(m, k)  # what x becomes
    return (x_used.double() @ dequantize(weight).double().t()).float()


@cache
def available() -> bool:
    """Whether the compiled kernel is loaded (built on first call if needed)."""
    if os.environ.get("GRAPHWRIGHT_CPU_KERNELS", "1") == "0":
        return False
    try:
        _load()
    except Exception as exc:  # no compiler, no headers: the engine keeps torch's own kernels
        log.warning("graphwright's CPU kernel could not be built (%s); using torch's int4/int8 kernels", exc)
        return False
    return True


def has_vnni() -> bool:
    """Whether the kernel runs its AVX-512 VNNI path here (else a portable, much slower loop)."""
    return available() and bool(torch.ops.graphwright.q_matmul_vnni())


def q_matmul(x: Tensor, weight: QuantizedWeight) -> Tensor:
    """``x @ W^T`` (float32 in and out; x is ``[m, k]``)."""
    if not available():
        raise RuntimeError("graphwright's CPU kernel is not available here (see the log for why)")
    return torch.ops.graphwright.q_matmul(x, weight.codes, weight.scales, weight.mins, weight.bits)


def dequantize_bf16(weight: QuantizedWeight) -> Tensor:
    """A 4-bit weight widened to bfloat16 ``[n, k]`` (``dequantize.cpp``), for a prompt's matmul.

    Each weight is ``scale * code + min`` in float32, rounded once to the nearest bfloat16.
    """
    if weight.bits != 4:
        raise ValueError(f"dequantize_bf16 takes 4-bit weights, not {weight.bits}-bit")
    if not available():
        raise RuntimeError("graphwright's CPU kernel is not available here (see the log for why)")
    return torch.ops.graphwright.q_dequantize(weight.codes, weight.scales, weight.mins)


# The ops' C entry points (``extern "C"`` at the end of qmatmul.cpp and attention.cpp), declared
# for AOTInductor's generated code, which then calls them directly (see ``exported.py``).
_C_SHIMS = {
    "q_matmul": "AOTITorchError aoti_torch_cpu_q_matmul(AtenTensorHandle x, AtenTensorHandle codes, "
    "AtenTensorHandle scales, AtenTensorHandle mins, int64_t bits, AtenTensorHandle* out)",
    "decode_attention": "AOTITorchError aoti_torch_cpu_decode_attention(AtenTensorHandle q, "
    "AtenTensorHandle k_cache, AtenTensorHandle v_cache, AtenTensorHandle slots, AtenTensorHandle lens, "
    "double scale, AtenTensorHandle* out)",
}


def c_shims() -> dict[torch._ops.OpOverload, list[str]]:
    """Inductor's ``aot_inductor.custom_ops_to_c_shims`` for our ops (empty where they are not built)."""
    if not available():
        return {}
    return {getattr(torch.ops.graphwright, op).default: [decl] for op, decl in _C_SHIMS.items()}


def build_dir() -> Path:
    return cache_root() / "cpu_kernels" / f"torch-{torch.__version__.split('+')[0]}"


def _load() -> None:
    from torch.utils.cpp_extension import load  # imported on use: it pulls in setuptools

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    load(
        name="graphwright_qmatmul",
        sources=[str(p) for p in _SOURCES],
        extra_cflags=["-O3", "-fopenmp"],  # at::parallel_for is OpenMP inline in the headers
        extra_ldflags=["-fopenmp"],
        build_directory=str(directory),
        is_python_module=False,
        verbose=False,
    )
    # Loaded by torch with RTLD_LOCAL; made global so that the C entry points resolve in the
    # libraries AOTInductor builds (which name them but do not link this one).
    ctypes.CDLL(str(directory / "graphwright_qmatmul.so"), mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)

    @torch.library.register_fake("graphwright::q_matmul")
    def _(x: Tensor, codes: Tensor, scales: Tensor, mins: Tensor, bits: int) -> Tensor:
        return x.new_empty((x.shape[0], codes.shape[0]))

    @torch.library.register_fake("graphwright::q_dequantize")
    def _(codes: Tensor, scales: Tensor, mins: Tensor) -> Tensor:
        return codes.new_empty((codes.shape[0], codes.shape[1] * 2), dtype=torch.bfloat16)

    @torch.library.register_fake("graphwright::decode_attention")
    def _(q: Tensor, k_cache: Tensor, v_cache: Tensor, slots: Tensor, lens: Tensor, scale: float) -> Tensor:
        return torch.empty_like(q, memory_format=torch.contiguous_format)
