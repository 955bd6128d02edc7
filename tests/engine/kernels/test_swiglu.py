import pytest
import torch

from graphwright.engine.kernels.swiglu import swiglu, swiglu_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 40), (17, 96), (2, 3, 1100)])
@pytest.mark.parametrize("fused", [False, True])
def test_swiglu_matches_reference(shape, dtype, fused, monkeypatch):
    gen = torch.Generator().manual_seed(sum(shape) * 31 + dtype.itemsize * 7 + fused)
    gate = (2 * torch.randn(shape, generator=gen)).to(DEVICE, dtype)
    up = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: real_empty(*a, **kw).fill_(float("nan")))
    if fused:
        gate_up = torch.cat([gate, up], dim=-1)
        out = swiglu(gate_up)
        monkeypatch.undo()
        ref = swiglu_reference(gate_up)
    else:
        out = swiglu(gate, up)
        monkeypatch.undo()
        ref = swiglu_reference(gate, up)
    assert out.shape == shape and out.dtype == dtype
    assert not out.isnan().any()
    assert rel_err(out, ref) < TOL[dtype]


def test_swiglu_strided_views():
    # Gate and up as non-contiguous column slices of a wider buffer (row stride != ffn).
    buf = torch.randn(5, 3 * 48).to(DEVICE)
    gate, up = buf[:, :48], buf[:, 96:]
    assert rel_err(swiglu(gate, up), swiglu_reference(gate, up)) < 1e-6
