"""Sampling kernel tests.

The interpreter runs one program per row at roughly 5-100 ms each here, so the statistical tests
use a few hundred draws and a chi-square test at p = 1e-4 (seeds are fixed, so the outcome is
deterministic; the threshold only says how unlikely a correct kernel is to fail for some seed set).
"""

import pytest
import torch

from graphwright.engine.kernels.sampling import filtered_probs_reference, sample

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
# Chi-square critical values at p = 1e-4 for 1..9 degrees of freedom.
CHI2_CRIT = [15.14, 18.42, 21.11, 23.51, 25.74, 27.86, 29.88, 31.83, 33.72]


def params(batch, temperature, top_k, top_p, seed0=0):
    return (
        torch.full((batch,), temperature, dtype=torch.float32, device=DEVICE),
        torch.full((batch,), top_k, dtype=torch.int32, device=DEVICE),
        torch.full((batch,), top_p, dtype=torch.float32, device=DEVICE),
        torch.arange(seed0, seed0 + batch, dtype=torch.int64, device=DEVICE),
    )


def poisoned_out(batch):
    return torch.full((batch,), -1, dtype=torch.int64, device=DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [7, 40, 1500])  # 1500: two chunks, a partial last one
def test_greedy_and_top_k_1_equal_argmax(vocab, dtype):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(5, vocab, generator=gen).to(DEVICE, dtype)
    expected = logits.float().argmax(-1)
    greedy = sample(logits, *params(5, 0.0, 0, 1.0), out=poisoned_out(5))
    assert torch.equal(greedy, expected)
    top1 = sample(logits, *params(5, 1.3, 1, 1.0), out=poisoned_out(5))
    assert torch.equal(top1, expected)


def test_greedy_ties_take_first_index():
    logits = torch.zeros(2, 1030, device=DEVICE)
    logits[0, [3, 9]] = 5.0
    logits[1, [1029, 2]] = 5.0  # max in both chunks
    out = sample(logits, *params(2, 0.0, 0, 1.0))
    assert out.tolist() == [3, 2]


def test_fixed_seed_is_deterministic():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 50, generator=gen).to(DEVICE)
    args = params(6, 1.0, 20, 0.95, seed0=123)
    first = sample(logits, *args)
    assert torch.equal(first, sample(logits, *args))
    # Other seeds change at least one of six draws from a flat-ish distribution.
    assert not torch.equal(first, sample(logits, *params(6, 1.0, 20, 0.95, seed0=999)))


def test_per_row_parameters_never_draw_filtered_tokens():
    gen = torch.Generator().manual_seed(11)
    vocab, batch = 300, 12
    logits = (3 * torch.randn(batch, vocab, generator=gen)).to(DEVICE)
    temperature = torch.tensor([1.0, 2.0, 0.5, 1.0] * 3, device=DEVICE)
    top_k = torch.tensor([3, 0, 10, 1, 0, 50, 3, 0, 300, 400, 5, 0], dtype=torch.int32, device=DEVICE)
    top_p = torch.tensor([1.0, 0.5, 0.8, 1.0, 0.3, 0.9, 0.6, 1.0, 0.2, 1.0, 0.99, 0.05], device=DEVICE)
    allowed = filtered_probs_reference(logits, temperature, top_k, top_p) > 0
    for seed0 in (0, 1000):
        seeds = torch.arange(seed0, seed0 + batch, device=DEVICE)
        tokens = sample(logits, temperature, top_k, top_p, seeds, out=poisoned_out(batch))
        assert allowed[torch.arange(batch), tokens].all()


@pytest.mark.parametrize(
    ("spread", "temperature", "top_k", "top_p", "draws"),
    [
        # Plain temperature, cheap rows: more draws; logits spread so that a temperature off by
        # 1.6x fails the test (chi2 43 against 33.7), a correct kernel gives chi2 10.
        (2.5, 1.5, 0, 1.0, 300),
        # Temperature + top-k + top-p, costly rows: 5 of 10 tokens kept, chi2 1.9 (limit 23.5).
        (1.0, 0.8, 6, 0.9, 200),
    ],
)
def test_empirical_distribution_matches_reference(spread, temperature, top_k, top_p, draws):
    gen = torch.Generator().manual_seed(2024)
    vocab = 10
    row = (spread * torch.randn(1, vocab, generator=gen)).to(DEVICE)
    probs = filtered_probs_reference(row, *params(1, temperature, top_k, top_p)[:3])[0]
    tokens = sample(row.expand(draws, vocab).contiguous(), *params(draws, temperature, top_k, top_p))
    counts = torch.bincount(tokens, minlength=vocab).float()
    assert (counts[probs == 0] == 0).all(), "a filtered-out token was drawn"
    kept = probs > 0
    expected = probs[kept] * draws
    chi2 = float(((counts[kept] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRIT[int(kept.sum()) - 2], (chi2, counts.tolist(), expected.tolist())


def test_masked_logits_never_drawn():
    # Grammar-constrained decoding sets forbidden logits to -inf before sampling.
    gen = torch.Generator().manual_seed(9)
    batch, vocab = 8, 40
    logits = torch.randn(batch, vocab, generator=gen)
    allowed = torch.zeros(batch, vocab, dtype=torch.bool)
    for r in range(batch):
        allowed[r, torch.randperm(vocab, generator=gen)[: 1 + r % 5]] = True
    logits = logits.masked_fill(~allowed, float("-inf")).to(DEVICE)
    temperature = torch.tensor([0.0, 1.0, 0.7, 2.0] * 2, device=DEVICE)
    top_k = torch.tensor([0, 0, 3, 50, 2, 0, 0, 1], dtype=torch.int32, device=DEVICE)
    top_p = torch.tensor([1.0, 0.9, 1.0, 0.5, 1.0, 1.0, 0.3, 1.0], device=DEVICE)
    tokens = sample(logits, temperature, top_k, top_p, torch.arange(batch, device=DEVICE))
    assert allowed.to(DEVICE)[torch.arange(batch), tokens].all()
    assert tokens[0] == logits[0].argmax()
