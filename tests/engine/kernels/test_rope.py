import pytest
import torch

from graphwright.engine.kernels.rope import rope_, rope_inv_freq, rope_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# In-kernel cos/sin vs torch's differ by a few fp32 ulps of the angle; fp16 adds storage rounding.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("tokens", "n_heads", "n_kv_heads", "head_dim"),
    [(3, 4, 2, 16), (7, 6, 2, 40), (1, 3, 3, 64)],
)
@pytest.mark.parametrize("use_cache", [False, True])
def test_rope_matches_reference(tokens, n_heads, n_kv_heads, head_dim, dtype, use_cache):
    gen = torch.Generator().manual_seed(tokens * 1000 + head_dim + use_cache)
    q = torch.randn(tokens, n_heads, head_dim, generator=gen).to(DEVICE, dtype)
    k = torch.randn(tokens, n_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    # Arbitrary, unsorted positions, as a batch of sequences at different lengths gives.
    positions = torch.randint(0, 2000, (tokens,), generator=gen).to(DEVICE, torch.int32)
    ref_q, ref_k = rope_reference(q, k, positions, theta=10000.0)
    cache = None
    if use_cache:
        # Hugging Face's duplicated [max_pos, head_dim] layout: only the first half is read.
        freqs = torch.arange(2048, dtype=torch.float32)[:, None] * rope_inv_freq(head_dim, 10000.0)[None]
        emb = torch.cat([freqs, freqs], dim=-1).to(DEVICE)
        cache = (emb.cos(), emb.sin())
    q_out, k_out = rope_(q, k, positions, theta=10000.0, cos_sin_cache=cache)
    assert q_out.data_ptr() == q.data_ptr() and k_out.data_ptr() == k.data_ptr(), "must be in place"
    assert rel_err(q, ref_q) < TOL[dtype]
    assert rel_err(k, ref_k) < TOL[dtype]


def test_rope_on_fused_qkv_views():
    # q and k as views of one fused projection output: head stride = head_dim, token stride wider.
    tokens, nh, nkv, hd = 5, 4, 2, 32
    qkv = torch.randn(tokens, (nh + 2 * nkv) * hd).to(DEVICE)
    q = qkv[:, : nh * hd].view(tokens, nh, hd)
    k = qkv[:, nh * hd : (nh + nkv) * hd].view(tokens, nkv, hd)
    v_before = qkv[:, (nh + nkv) * hd :].clone()
    positions = torch.tensor([0, 1, 17, 300, 4], device=DEVICE)
    ref_q, ref_k = rope_reference(q, k, positions, theta=500000.0)
    rope_(q, k, positions, theta=500000.0)
    assert rel_err(q, ref_q) < 1e-5 and rel_err(k, ref_k) < 1e-5
    assert torch.equal(qkv[:, (nh + nkv) * hd :], v_before), "v must be untouched"


def test_rope_position_zero_is_identity():
    q = torch.randn(2, 2, 16).to(DEVICE)
    k = torch.randn(2, 1, 16).to(DEVICE)
    q0, k0 = q.clone(), k.clone()
    rope_(q, k, torch.zeros(2, dtype=torch.int64, device=DEVICE))
    assert torch.allclose(q, q0) and torch.allclose(k, k0)
