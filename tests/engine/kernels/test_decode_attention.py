import pytest
import torch

from graphwright.engine.kernels.decode_attention import decode_attention, decode_attention_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32: only summation order differs. fp16: P is rounded to fp16 before the P@V dot.
TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def make_cache(seq_lens, n_heads, n_kv_heads, head_dim, block_size, dtype, seed):
    """Random q and a paged cache whose blocks are handed out in shuffled order."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(seq_lens)
    max_blocks = max(-(-n // block_size) for n in seq_lens) + 1  # a spare column, never read
    num_blocks = batch * max_blocks + 3
    perm = torch.randperm(num_blocks, generator=gen)[: batch * max_blocks]
    block_tables = perm.view(batch, max_blocks).to(torch.int32)
    k_cache = torch.randn(num_blocks, block_size, n_kv_heads, head_dim, generator=gen)
    v_cache = torch.randn(num_blocks, block_size, n_kv_heads, head_dim, generator=gen)
    q = torch.randn(batch, n_heads, head_dim, generator=gen)
    to = dict(device=DEVICE, dtype=dtype)
    return (
        q.to(**to),
        k_cache.to(**to),
        v_cache.to(**to),
        block_tables.to(DEVICE),
        torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("seq_lens", "n_heads", "n_kv_heads", "head_dim", "block_size", "num_splits"),
    [
        ([5, 37, 1], 4, 2, 16, 16, 1),  # GQA group 2, one split
        ([70, 3], 6, 2, 40, 16, 3),  # odd head_dim (masked), group 3, splits incl. empty ones
        ([33], 8, 1, 32, 8, 2),  # MQA, block_size smaller than the tile
        ([20, 9], 2, 2, 64, 32, 4),  # plain MHA, more splits than needed
    ],
)
def test_decode_attention_matches_reference(
    seq_lens, n_heads, n_kv_heads, head_dim, block_size, num_splits, dtype
):
    q, k_cache, v_cache, block_tables, lens = make_cache(
        seq_lens, n_heads, n_kv_heads, head_dim, block_size, dtype, seed=sum(seq_lens) + head_dim
    )
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    decode_attention(q, k_cache, v_cache, block_tables, lens, num_splits=num_splits, out=out)
    ref = decode_attention_reference(q, k_cache, v_cache, block_tables, lens)
    assert not out.isnan().any()
    assert rel_err(out, ref) < TOL[dtype]


def test_decode_attention_default_splits_and_scale():
    q, k_cache, v_cache, block_tables, lens = make_cache([45, 12], 4, 2, 16, 16, torch.float32, seed=7)
    out = decode_attention(q, k_cache, v_cache, block_tables, lens, sm_scale=0.3)
    ref = decode_attention_reference(q, k_cache, v_cache, block_tables, lens, sm_scale=0.3)
    assert rel_err(out, ref) < 1e-5


def test_decode_attention_ignores_cache_beyond_seq_len():
    q, k_cache, v_cache, block_tables, lens = make_cache([10], 2, 1, 16, 16, torch.float32, seed=3)
    before = decode_attention(q, k_cache, v_cache, block_tables, lens, num_splits=2)
    # Garbage in the unused slots of the last block and in unmapped blocks must not matter.
    k_cache[block_tables[0, 0], 10:] = float("nan")
    v_cache[block_tables[0, 0], 10:] = 1e4
    after = decode_attention(q, k_cache, v_cache, block_tables, lens, num_splits=2)
    assert torch.equal(before, after)
