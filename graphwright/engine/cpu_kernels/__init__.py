"""C++ kernels for the engine's CPU path (torch extensions, built once per machine and cached)."""

from .qmatmul import (
    QuantizedWeight,
    available,
    c_shims,
    dequantize,
    dequantize_bf16,
    has_vnni,
    pack_int4,
    pack_int8,
    q_matmul,
    q_matmul_reference,
    quantize_activations,
)

__all__ = [
    "QuantizedWeight",
    "available",
    "c_shims",
    "dequantize",
    "dequantize_bf16",
    "has_vnni",
    "pack_int4",
    "pack_int8",
    "q_matmul",
    "q_matmul_reference",
    "quantize_activations",
]
