"""The quantized CPU matmul against its torch reference, on both of its paths (VNNI and portable)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from graphwright.engine import cpu_kernels
from graphwright.engine.cpu_kernels import (
    QuantizedWeight,
    dequantize,
    pack_int4,
    pack_int8,
    q_matmul,
    q_matmul_reference,
    quantize_activations,
)
from graphwright.engine.cpu_kernels.qmatmul import unpack
from graphwright.engine.quant import Int4Linear, Int8Linear


def _portable(x: Tensor, w: QuantizedWeight) -> Tensor:
    return torch.ops.graphwright.q_matmul_portable(x, w.codes, w.scales, w.mins, w.bits)


def _weight(bits: int, n: int, k: int) -> QuantizedWeight:
    w = torch.randn(n, k) * 0.05
    if bits == 4:
        lin = Int4Linear(w)
        return pack_int4(lin.q, lin.scales, lin.mins)
    lin8 = Int8Linear(w)
    return pack_int8(lin8.weight, lin8.scales)


def test_the_kernel_builds_here() -> None:
    # The test machine has a compiler and AVX-512 VNNI: the fast path must be the one that runs.
    assert cpu_kernels.available()
    assert cpu_kernels.has_vnni()


@pytest.mark.parametrize("path", [q_matmul, _portable], ids=["vnni", "portable"])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize(("m", "n", "k"), [(1, 576, 576), (3, 1538, 576), (17, 70, 1536), (1, 9, 64)])
def test_matches_the_reference(
    path: Callable[[Tensor, QuantizedWeight], Tensor], bits: int, m: int, n: int, k: int
) -> None:
    torch.manual_seed(m * n + k + bits)
    w = _weight(bits, n, k)
    x = torch.randn(m, k)
    x[:, 5] *= 30  # an outlier channel: it coarsens only its own block
    got, want = path(x, w), q_matmul_reference(x, w)
    assert got.shape == (m, n) and got.dtype == torch.float32
    # The integer dots are exact; only the float sums' order differs from float64.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("bits", [4, 8])
def test_quantizing_activations_per_block_stays_close_to_the_float_matmul(bits: int) -> None:
    torch.manual_seed(bits)
    w = _weight(bits, 256, 576)
    x = torch.randn(4, 576)
    exact = x @ dequantize(w).t()
    err = (q_matmul(x, w) - exact).norm() / exact.norm()
    assert err < 0.01, err  # int8 per block of 32: about 0.4% relative error here


def test_activations_are_quantized_per_block_of_32_as_gguf_q8() -> None:
    x = torch.tensor([[0.0] * 31 + [2.54] + [-1.0] * 32])
    q, d = quantize_activations(x)
    assert d[0].tolist() == pytest.approx([2.54 / 127, 1.0 / 127])
    assert q[0, 31] == 127 and q[0, 0] == 0 and bool((q[0, 32:] == -127).all())
    zero_q, zero_d = quantize_activations(torch.zeros(1, 64))  # an all-zero block: no division by 0
    assert not zero_q.any() and not zero_d.any()


def test_int4_packing_round_trips_and_keeps_q4_1_numbers() -> None:
    torch.manual_seed(0)
    lin = Int4Linear(torch.randn(12, 128))
    packed = pack_int4(lin.q, lin.scales, lin.mins)
    assert packed.codes.shape == (12, 64) and packed.shape == (12, 128)
    assert torch.equal(unpack(packed), lin.q.long())
    # Scales and minimums are float16 in the kernel, as in a GGUF Q4_1 block.
    want = (lin.q.view(12, 4, 32) * lin.scales.half().float()[..., None] + lin.mins.half().float()[..., None])
    assert torch.equal(dequantize(packed), want.view(12, 128))


def test_int8_packing_is_offset_codes_with_one_scale_per_row() -> None:
    lin = Int8Linear(torch.randn(5, 64))
    packed = pack_int8(lin.weight, lin.scales)
    assert packed.codes.dtype == torch.uint8 and packed.scales.shape == (5,)
    torch.testing.assert_close(dequantize(packed), lin.weight.float() * lin.scales[:, None])


def test_bad_shapes_and_types_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"multiples of 64; this weight is \[4, 96\]"):
        pack_int4(torch.zeros(4, 96, dtype=torch.uint8), torch.ones(4, 3), torch.zeros(4, 3))
    w = _weight(4, 8, 128)
    with pytest.raises(RuntimeError, match="float32"):
        q_matmul(torch.zeros(1, 128, dtype=torch.float64), w)
    with pytest.raises(RuntimeError, match="does not fit K = 64"):
        q_matmul(torch.zeros(1, 64), w)
    with pytest.raises(RuntimeError, match="float16"):
        q_matmul(torch.zeros(1, 128), QuantizedWeight(w.codes, w.scales.float(), w.mins, 4))


def test_compiles_as_one_opaque_op() -> None:
    w = _weight(4, 64, 128)

    def f(x: Tensor) -> Tensor:
        return torch.relu(torch.ops.graphwright.q_matmul(x * 2, w.codes, w.scales, w.mins, 4))

    x = torch.randn(3, 128)
    compiled = torch.compile(f, dynamic=True, fullgraph=True)
    torch.testing.assert_close(compiled(x), f(x))


@pytest.mark.parametrize("op", ["q_dequantize", "q_dequantize_portable"])
def test_int4_widens_to_bfloat16_as_the_reference_rounds_it(op: str) -> None:
    torch.manual_seed(3)
    w = _weight(4, 70, 192)
    got = getattr(torch.ops.graphwright, op)(w.codes, w.scales, w.mins)
    assert got.dtype == torch.bfloat16 and got.shape == (70, 192)
    want = dequantize(w)  # float32: scale * code + min
    # One rounding to bfloat16; the kernel's fused multiply-add may land one bfloat16 step away
    # where the float32 product and sum, rounded separately, sit on a tie.
    ulp = want.abs().clamp(min=1e-30) * 2.0**-7
    assert bool(((got.float() - want).abs() <= ulp).all())
    assert (got == want.to(torch.bfloat16)).float().mean() > 0.999
    assert torch.equal(cpu_kernels.dequantize_bf16(w), got) or op.endswith("portable")
    with pytest.raises(ValueError, match="4-bit"):
        cpu_kernels.dequantize_bf16(_weight(8, 4, 64))
