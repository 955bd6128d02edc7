"""Sampler: each filter and penalty on hand-made logits, seeds, logprobs."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from graphwright.engine.sampling import SamplerState, SamplingParams, filter_logits, sample

V = 8


def _state(**kw: object) -> SamplerState:
    return SamplerState(SamplingParams(**kw), V, prompt_ids=[])  # type: ignore[arg-type]


def _kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).view(-1).tolist())


def test_greedy_takes_the_argmax_and_reports_its_logprob() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0, 0, 0, 0]])
    expected = torch.log_softmax(logits[0], -1)[1].item()
    out = sample(logits.clone(), [_state(temperature=0)])
    assert out.tokens == [1]
    assert out.logprobs[0] == pytest.approx(expected)


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([0.0, 5.0, 1.0, 4.0, 3.0, -1.0, 2.0, 0.5])
    assert _kept(filter_logits(logits, SamplingParams(top_k=3))) == {1, 3, 4}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.5, 0.25, 0.15, 0.05, 0.03, 0.01, 0.005, 0.005])
    logits = probs.log()
    assert _kept(filter_logits(logits, SamplingParams(top_p=0.7))) == {0, 1}
    assert _kept(filter_logits(logits, SamplingParams(top_p=0.75))) == {0, 1}
    assert _kept(filter_logits(logits, SamplingParams(top_p=0.76))) == {0, 1, 2}
    assert _kept(filter_logits(logits, SamplingParams(top_p=0.1))) == {0}  # the top token always stays


def test_min_p_drops_tokens_below_a_fraction_of_the_top() -> None:
    probs = torch.tensor([0.4, 0.3, 0.1, 0.09, 0.05, 0.03, 0.02, 0.01])
    kept = _kept(filter_logits(probs.log(), SamplingParams(min_p=0.25)))
    assert kept == {0, 1, 2}  # 0.1 >= 0.25 * 0.4, 0.09 is not


def test_temperature_sharpens_and_flattens() -> None:
    logits = torch.tensor([1.0, 2.0, 0, 0, 0, 0, 0, 0])
    cold = torch.softmax(filter_logits(logits, SamplingParams(temperature=0.5)), -1)
    hot = torch.softmax(filter_logits(logits, SamplingParams(temperature=2.0)), -1)
    assert cold[1] > torch.softmax(logits, -1)[1] > hot[1]


def test_repetition_penalty_divides_positive_and_multiplies_negative() -> None:
    st = SamplerState(SamplingParams(repetition_penalty=2.0), V, prompt_ids=[0, 1])
    logits = torch.tensor([[4.0, -4.0, 3.0, 0, 0, 0, 0, 0]])
    sample(logits, [st])
    assert logits[0, 0].item() == 2.0 and logits[0, 1].item() == -8.0 and logits[0, 2].item() == 3.0


def test_presence_and_frequency_penalties_grow_with_counts() -> None:
    st = _state(temperature=0, presence_penalty=1.0, frequency_penalty=0.5)
    for tok in (3, 3, 5):
        st.record(tok)
    logits = torch.zeros(1, V)
    sample(logits, [st])
    assert logits[0, 3].item() == pytest.approx(-(1.0 + 2 * 0.5))
    assert logits[0, 5].item() == pytest.approx(-(1.0 + 0.5))
    assert logits[0, 0].item() == 0.0


def test_min_tokens_masks_end_tokens_until_reached() -> None:
    st = SamplerState(SamplingParams(temperature=0, min_tokens=1), V, prompt_ids=[], end_ids=[2])
    logits = torch.tensor([[0.0, 0, 9.0, 1.0, 0, 0, 0, 0]])
    assert sample(logits.clone(), [st]).tokens == [3]
    assert sample(logits.clone(), [st]).tokens == [2]  # one token generated: eos allowed again


def test_same_seed_same_draws_and_different_seed_differs() -> None:
    logits = torch.zeros(1, V)  # uniform: every draw is pure chance

    def draws(seed: int) -> list[int]:
        st = _state(temperature=1.0, seed=seed)
        return [sample(logits.clone(), [st]).tokens[0] for _ in range(32)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_samples_follow_the_distribution() -> None:
    probs = torch.tensor([0.6, 0.3, 0.1, 0, 0, 0, 0, 0])
    st = _state(temperature=1.0, seed=0)
    counts = [0] * V
    for _ in range(600):
        counts[sample(probs.log()[None].clone(), [st]).tokens[0]] += 1
    assert counts[3:] == [0] * 5
    assert abs(counts[0] / 600 - 0.6) < 0.08 and abs(counts[2] / 600 - 0.1) < 0.05


def test_top_logprobs_are_sorted_model_logprobs() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0, 0, 0, 0]])
    ref = torch.log_softmax(logits[0], -1)
    out = sample(logits.clone(), [_state(temperature=0, top_logprobs=3)])
    assert [t for t, _ in out.top_logprobs[0]] == [1, 3, 2]
    assert all(math.isclose(lp, ref[t].item(), rel_tol=1e-6) for t, lp in out.top_logprobs[0])


def test_a_batch_samples_each_row_with_its_own_params() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0, 0, 0, 0]] * 2)
    out = sample(logits, [_state(temperature=0), _state(temperature=0, top_k=1)])
    assert out.tokens == [1, 1]


def test_bad_parameters_are_rejected() -> None:
    for bad in (
        {"temperature": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"n": 2, "best_of": 1},
        {"max_tokens": 0},
    ):
        with pytest.raises(ValidationError):
            SamplingParams(**bad)  # type: ignore[arg-type]
