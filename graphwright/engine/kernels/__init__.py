"""Triton kernels for the engine's GPU path (see each module for its kernel, launcher and reference).

Importing this package needs torch and triton but no GPU; the kernels run on CUDA tensors, or on
CPU tensors under ``TRITON_INTERPRET=1`` (set before import), which is how the tests run them.
"""

from .decode_attention import decode_attention, decode_attention_reference
from .int8_matmul import Int8Linear, int8_matmul, int8_matmul_reference, quantize_int8, quantize_linear
from .prefill_attention import prefill_attention, prefill_attention_reference
from .rmsnorm import rmsnorm, rmsnorm_reference
from .rope import rope_, rope_inv_freq, rope_reference
from .sampling import filtered_probs_reference, sample
from .swiglu import swiglu, swiglu_reference

__all__ = [
    "Int8Linear",
    "decode_attention",
    "decode_attention_reference",
    "filtered_probs_reference",
    "int8_matmul",
    "int8_matmul_reference",
    "prefill_attention",
    "prefill_attention_reference",
    "quantize_int8",
    "quantize_linear",
    "rmsnorm",
    "rmsnorm_reference",
    "rope_",
    "rope_inv_freq",
    "rope_reference",
    "sample",
    "swiglu",
    "swiglu_reference",
]
