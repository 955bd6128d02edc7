"""The C++ decode attention against its torch reference, on both of its paths (AVX-512 and portable),
and against the gather + SDPA that the model runs without it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from graphwright.engine.cpu_kernels.attention import decode_attention, decode_attention_reference

Attend = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, float], Tensor]


def _portable(q: Tensor, k: Tensor, v: Tensor, slots: Tensor, lens: Tensor, scale: float) -> Tensor:
    return torch.ops.graphwright.decode_attention_portable(q, k, v, slots, lens, scale)


def _case(bsz: int, heads: int, kv_heads: int, dim: int, width: int, block: int = 16):
    """A paged cache of 64 blocks and each sequence's slots: whole blocks in a shuffled order."""
    k = torch.randn(64 * block, kv_heads, dim)
    v = torch.randn(64 * block, kv_heads, dim)
    rows = []
    for _ in range(bsz):
        blocks = torch.randperm(64)[: -(-width // block)]
        rows.append((blocks[:, None] * block + torch.arange(block)).reshape(-1)[:width])
    lens = torch.randint(1, width + 1, (bsz,))
    lens[0] = width
    return torch.randn(bsz, heads, dim), k, v, torch.stack(rows), lens


@pytest.mark.parametrize("path", [decode_attention, _portable], ids=["avx512", "portable"])
@pytest.mark.parametrize(
    ("bsz", "heads", "kv_heads", "dim", "width"),
    [
        (1, 9, 3, 64, 37),
        (3, 9, 3, 64, 165),
        (2, 4, 4, 128, 70),
        (2, 8, 1, 32, 17),
        (2, 6, 2, 48, 40),  # a head size without a vector path: the portable loops
        (1, 16, 1, 64, 50),  # more query heads per KV head than registers hold: portable
        # Long contexts are split into parts, merged after (the second row's may be empty):
        (1, 9, 3, 64, 700),
        (2, 9, 3, 64, 600),
    ],
)
def test_matches_the_reference(
    path: Attend, bsz: int, heads: int, kv_heads: int, dim: int, width: int
) -> None:
    torch.manual_seed(bsz * width + dim)
    q, k, v, slots, lens = _case(bsz, heads, kv_heads, dim, width)
    q[:, 0] *= 8  # a peaked softmax too, where exp's accuracy near 0 shows
    scale = dim**-0.5
    got = path(q, k, v, slots, lens.int(), scale)
    assert got.shape == q.shape and got.dtype == torch.float32
    # float32 scores of up to ~60 carry ~4e-6 of rounding into exp(); SDPA's do too.
    want = decode_attention_reference(q, k, v, slots, lens, scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_equals_what_the_model_computes_without_it() -> None:
    """The model's other decode path: gather the context, SDPA with a padding mask."""
    torch.manual_seed(0)
    q, k, v, slots, lens = _case(4, 9, 3, 64, 100)
    keys = k[slots].transpose(1, 2)  # [B, KV, L, D]
    values = v[slots].transpose(1, 2)
    mask = (torch.arange(100)[None, :] < lens[:, None])[:, None, None, :]
    sdpa = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask, enable_gqa=True)
    got = decode_attention(q, k, v, slots, lens, 64**-0.5)
    torch.testing.assert_close(got, sdpa[:, :, 0], rtol=1e-5, atol=2e-6)


def test_reads_only_each_rows_own_length() -> None:
    """Slots past a row's length (padding) may hold anything, NaN included: they are not read."""
    torch.manual_seed(1)
    q, k, v, slots, lens = _case(2, 9, 3, 64, 50)
    lens[1] = 20
    want = decode_attention(q, k, v, slots, lens, 0.125)
    k[slots[1, 20:]] = float("nan")
    v[slots[1, 20:]] = float("nan")
    slots[1, 30:] = 10**9  # outside the cache, and past the length: never checked, never read
    torch.testing.assert_close(decode_attention(q, k, v, slots, lens, 0.125)[1], want[1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(lens=torch.tensor([0])), "lens\\[0\\] = 0 is outside 1..37"),
        (lambda c: c.update(lens=torch.tensor([38])), "lens\\[0\\] = 38 is outside 1..37"),
        (lambda c: c["slots"].__setitem__((0, 5), 4096), "slots\\[0, 5\\] = 4096 is outside the cache"),
        (lambda c: c.update(q=torch.randn(1, 8, 64)), "8 query heads do not split into groups over 3"),
        (lambda c: c.update(lens=torch.tensor([37.0])), "lens must be int32 or int64"),
        (lambda c: c.update(k=c["k"].double()), "contiguous float32"),
    ],
)
def test_bad_input_names_what_and_where(change: Callable[[dict], None], message: str) -> None:
    q, k, v, slots, lens = _case(1, 9, 3, 64, 37)
    case = {"q": q, "k": k, "v": v, "slots": slots, "lens": lens}
    change(case)
    with pytest.raises(RuntimeError, match=message):
        decode_attention(case["q"], case["k"], case["v"], case["slots"], case["lens"], 0.125)
