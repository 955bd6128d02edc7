import pytest
import torch
from torch import nn

from graphwright.engine.kernels.int8_matmul import (
    Int8Linear,
    int8_matmul,
    int8_matmul_reference,
    quantize_int8,
    quantize_linear,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Kernel vs the same dequantized weights in fp32: fp32 is rounding-only; fp16 output rounding.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "n", "k"), [(1, 40, 48), (3, 96, 17), (17, 33, 300), (70, 72, 40)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_matmul_matches_reference(m, n, k, dtype, with_bias, monkeypatch):
    gen = torch.Generator().manual_seed(m * 10007 + n * 101 + k + with_bias)
    w = torch.randn(n, k, generator=gen)
    w_int8, scale = quantize_int8(w)
    w_int8, scale = w_int8.to(DEVICE), scale.to(DEVICE)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype) if with_bias else None
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: real_empty(*a, **kw).fill_(float("nan")))
    y = int8_matmul(x, w_int8, scale, bias)
    monkeypatch.undo()
    ref = int8_matmul_reference(x, w_int8, scale, bias)
    assert y.shape == (m, n) and y.dtype == dtype
    assert not y.isnan().any()
    assert rel_err(y, ref) < TOL[dtype]


def test_quantize_int8_roundtrip():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(24, 64, generator=gen)
    w[3] = 0.0  # an all-zero row must not divide by zero
    w_int8, scale = quantize_int8(w)
    assert w_int8.dtype == torch.int8 and scale.shape == (24,)
    assert int(w_int8.abs().max()) == 127 and int(w_int8.min()) >= -127
    deq = w_int8.float() * scale[:, None]
    # Round-to-nearest: each element within half a quantization step.
    assert ((deq - w).abs() <= scale[:, None] / 2 + 1e-7).all()
    assert rel_err(deq, w) < 1e-2


def test_quantize_linear_module():
    gen = torch.Generator().manual_seed(2)
    lin = nn.Linear(48, 20, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(20, 48, generator=gen))
    lin = lin.to(DEVICE)
    q = quantize_linear(lin)
    assert isinstance(q, Int8Linear) and q.w_int8.device == lin.weight.device
    x = torch.randn(2, 3, 48, generator=gen).to(DEVICE)
    y = q(x)
    assert y.shape == (2, 3, 20)
    with torch.no_grad():
        assert rel_err(y, lin(x)) < 1e-2  # quantization error only
