import pytest
import torch

from graphwright.engine.kernels.prefill_attention import prefill_attention, prefill_attention_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32: summation order only. fp16: P is rounded to fp16 before the P@V dot.
TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("seq_lens", "n_heads", "n_kv_heads", "head_dim"),
    [
        ([17], 2, 1, 16),  # one prompt, MQA
        ([5, 70, 1], 4, 2, 40),  # packed prompts, odd head_dim, more than one query tile
        ([33, 9], 3, 3, 32),  # MHA
    ],
)
def test_prefill_attention_matches_reference(seq_lens, n_heads, n_kv_heads, head_dim, dtype):
    gen = torch.Generator().manual_seed(sum(seq_lens) * 7 + head_dim)
    tokens = sum(seq_lens)
    q = torch.randn(tokens, n_heads, head_dim, generator=gen).to(DEVICE, dtype)
    k = torch.randn(tokens, n_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    v = torch.randn(tokens, n_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    cu = torch.tensor([0, *torch.tensor(seq_lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    cu_arg = cu if len(seq_lens) > 1 else None
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    prefill_attention(q, k, v, cu_seqlens=cu_arg, out=out)
    ref = prefill_attention_reference(q, k, v, cu_seqlens=cu_arg)
    assert not out.isnan().any()
    assert rel_err(out, ref) < TOL[dtype]


def test_prefill_attention_is_causal_and_per_prompt():
    # Changing a later token (or another prompt) must not change earlier outputs of a prompt.
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(12, 2, 16, generator=gen).to(DEVICE) for _ in range(3))
    cu = torch.tensor([0, 7, 12], dtype=torch.int32, device=DEVICE)
    before = prefill_attention(q, k, v, cu_seqlens=cu)
    k2, v2 = k.clone(), v.clone()
    k2[5:], v2[5:] = 100.0, -100.0
    after = prefill_attention(q, k2, v2, cu_seqlens=cu)
    assert torch.equal(before[:5], after[:5])
