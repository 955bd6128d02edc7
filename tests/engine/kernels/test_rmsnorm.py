import pytest
import torch

from graphwright.engine.kernels.rmsnorm import rmsnorm, rmsnorm_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Relative error ‖out − ref‖/‖ref‖: fp32 matches to rounding; fp16 to half a few ulps.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 40), (17, 96), (2, 5, 33), (1, 128)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rmsnorm_matches_reference(shape, dtype, with_residual, monkeypatch):
    gen = torch.Generator().manual_seed(sum(shape) * 31 + dtype.itemsize * 7 + with_residual)
    x = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    w = (1 + 0.1 * torch.randn(shape[-1], generator=gen)).to(DEVICE, dtype)
    res = torch.randn(shape, generator=gen).to(DEVICE, dtype) if with_residual else None
    x_before = x.clone()

    # Poison the buffers the launcher allocates so an element the kernel never writes shows up.
    real_empty_like = torch.empty_like
    monkeypatch.setattr(torch, "empty_like", lambda t, **kw: real_empty_like(t, **kw).fill_(float("nan")))
    out, new_res = rmsnorm(x, w, 1e-6, residual=res)
    monkeypatch.undo()

    ref_out, ref_res = rmsnorm_reference(x, w, 1e-6, residual=res)
    assert out.shape == x.shape and new_res.shape == x.shape
    assert out.dtype == dtype and new_res.dtype == dtype
    assert not out.isnan().any() and not new_res.isnan().any()
    assert rel_err(out, ref_out) < TOL[dtype]
    assert rel_err(new_res, ref_res) < TOL[dtype]
    assert torch.equal(x, x_before), "inputs must not be modified"
