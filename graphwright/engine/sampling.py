"""Sampling parameters and the sampler: logits of a batch -> one next token per row.

Order per row, as in vLLM: penalties, constraint mask (grammar), then greedy argmax, or
temperature -> min-p -> top-k -> top-p -> a draw from the row's own seeded generator. Reported
logprobs are the model's own (log-softmax of the raw logits), which is also what best-of-N
ranks by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from pydantic import BaseModel, Field, model_validator
from torch import Tensor


class SamplingParams(BaseModel):
    max_tokens: int | None = Field(default=None, ge=1)  # None: up to the context length
    min_tokens: int = Field(default=0, ge=0)  # eos and stop tokens are masked until this many
    temperature: float = Field(default=1.0, ge=0.0)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)  # 0 or -1: off
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] = Field(default_factory=list)
    ignore_eos: bool = False
    n: int = Field(default=1, ge=1, le=64)
    best_of: int | None = Field(default=None, ge=1, le=64)  # draw this many, return the n best
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)

    @model_validator(mode="after")
    def _check(self) -> SamplingParams:
        if self.best_of is not None and self.best_of < self.n:
            raise ValueError(f"best_of ({self.best_of}) must be >= n ({self.n})")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@runtime_checkable
class TokenConstraint(Protocol):
    """A per-request restriction on the next token, e.g. a grammar matcher (xgrammar)."""

    def mask_logits(self, logits: Tensor) -> None:
        """Set the logits of every token that is not allowed next to -inf, in place ([vocab])."""

    def accept_token(self, token_id: int) -> None: ...

    def is_terminated(self) -> bool:
        """True once the constrained output is complete: the request then stops."""


@dataclass
class SamplerState:
    """What one sequence's sampling remembers between steps."""

    params: SamplingParams
    vocab_size: int
    prompt_ids: list[int]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed_offset: int = 0  # the i-th of n samples uses seed + i, so the n samples differ
    generator: torch.Generator | None = None
    counts: Tensor | None = None  # generated-token counts, for presence/frequency penalties
    seen: Tensor | None = None  # prompt or generated, for the repetition penalty
    end_ids: list[int] = field(default_factory=list)  # eos + stop tokens, masked before min_tokens
    generated: int = 0

    def __post_init__(self) -> None:
        p = self.params
        if not p.greedy:
            self.generator = torch.Generator(device=self.device)
            if p.seed is not None:
                self.generator.manual_seed(p.seed + self.seed_offset)
            else:
                self.generator.seed()
        if p.presence_penalty or p.frequency_penalty:
            self.counts = torch.zeros(self.vocab_size, device=self.device)
        if p.repetition_penalty != 1.0:
            self.seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
            ids = torch.tensor([t for t in self.prompt_ids if t < self.vocab_size], dtype=torch.long)
            self.seen[ids.to(self.device)] = True

    def record(self, token: int) -> None:
        self.generated += 1
        if self.counts is not None:
            self.counts[token] += 1
        if self.seen is not None:
            self.seen[token] = True


@dataclass
class SampleResult:
    tokens: list[int]
    logprobs: list[float]  # the model's logprob of each chosen token
    top_logprobs: list[list[tuple[int, float]]]  # per row, empty unless asked for


def apply_penalties(logits: Tensor, st: SamplerState) -> None:
    p = st.params
    if st.generated < p.min_tokens and st.end_ids:
        logits[st.end_ids] = float("-inf")
    if st.seen is not None:
        # As transformers and vLLM: divide positive logits, multiply negative ones.
        sel = logits[st.seen]
        logits[st.seen] = torch.where(sel > 0, sel / p.repetition_penalty, sel * p.repetition_penalty)
    if st.counts is not None:
        logits -= p.frequency_penalty * st.counts + p.presence_penalty * (st.counts > 0).float()


def filter_logits(logits: Tensor, p: SamplingParams) -> Tensor:
    """Temperature, min-p, top-k, top-p on one row; returns new logits (dropped tokens at -inf)."""
    logits = logits / p.temperature
    if p.min_p > 0.0:
        probs = torch.softmax(logits, dim=-1)
        logits = logits.masked_fill(probs < p.min_p * probs.max(), float("-inf"))
    if p.top_k > 0 and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first always stays.
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= p.top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    logits: Tensor, states: list[SamplerState], constraints: list[TokenConstraint | None] | None = None
) -> SampleResult:
    """One token per row of ``logits`` [B, V] (float32; modified in place)."""
    logprobs_all = torch.log_softmax(logits, dim=-1)
    # Rows that are plain greedy (nothing to mask or penalize) share one batched argmax.
    plain = [
        st.params.greedy
        and st.counts is None
        and st.seen is None
        and st.generated >= st.params.min_tokens
        and not (constraints and constraints[i] is not None)
        for i, st in enumerate(states)
    ]
    batch_argmax = logits.argmax(dim=-1).tolist() if any(plain) else []
    tokens: list[int] = []
    for i, st in enumerate(states):
        if plain[i]:
            tokens.append(int(batch_argmax[i]))
            st.record(tokens[-1])
            continue
        row = logits[i]
        apply_penalties(row, st)
        c = constraints[i] if constraints else None
        if c is not None:
            c.mask_logits(row)
        if st.params.greedy:
            tokens.append(int(torch.argmax(row)))
        else:
            probs = torch.softmax(filter_logits(row, st.params), dim=-1)
            tokens.append(int(torch.multinomial(probs, 1, generator=st.generator)))
        st.record(tokens[-1])
    chosen = logprobs_all[torch.arange(len(tokens)), torch.tensor(tokens)].tolist()
    tops: list[list[tuple[int, float]]] = []
    for i, st in enumerate(states):
        k = st.params.top_logprobs
        if k:
            vals, idx = torch.topk(logprobs_all[i], k)
            tops.append(list(zip(idx.tolist(), vals.tolist(), strict=False)))
        else:
            tops.append([])
    return SampleResult(tokens=tokens, logprobs=[float(x) for x in chosen], top_logprobs=tops)
