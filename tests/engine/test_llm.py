"""The engine end to end: continuous batching, streaming, cancellation, prefix reuse, limits."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from graphwright.engine.llm import LocalEngine, RequestError
from graphwright.engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=24, min_tokens=24)


def _ids(engine: Any, text: str, system: str | None = None) -> list[int]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return engine.encode_chat(msgs)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    engine: Any, chat_prompts: list[str]
) -> None:
    prompts = [_ids(engine, p) for p in chat_prompts[:6]]
    alone = [engine.generate(p, GREEDY).outputs[0].token_ids for p in prompts]
    handles = [engine.submit(p, GREEDY) for p in prompts]
    together = [h.result().outputs[0].token_ids for h in handles]
    for a, t in zip(alone, together, strict=False):
        assert len(t) == 24
        # Batched matmuls may round differently from batch 1; near ties can then flip late tokens.
        assert t[:8] == a[:8]
    assert len({tuple(t) for t in together}) == 6


def _record_model_calls(eng: Any) -> list[tuple[int, ...]]:
    """The ``input_ids`` shape of every model call the engine makes from now on, in order."""
    calls: list[tuple[int, ...]] = []
    model = eng.scheduler.model
    original = model.forward

    def recording(input_ids: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        calls.append(tuple(input_ids.shape))
        return original(input_ids, *args, **kw)

    model.forward = recording
    return calls


def test_prompts_that_arrive_together_are_prefilled_in_one_batch(
    engine: Any, chat_prompts: list[str]
) -> None:
    # Without the prefix cache, prompts queued together are prefilled as one right-padded batch.
    eng = LocalEngine.load("smollm2", cache_dir=str(_cache(engine)), prefix_caching=False)
    calls = _record_model_calls(eng)
    try:
        prompts = [_ids(eng, p) for p in chat_prompts[:5]]
        assert len({len(p) for p in prompts}) > 1  # different lengths: padding is exercised
        alone = [eng.generate(p, GREEDY) for p in prompts]
        calls.clear()
        with eng._wake:  # all queued before the engine's next step
            handles = [eng.submit(p, GREEDY) for p in prompts]
        together = [h.result() for h in handles]
    finally:
        eng.close()
    assert calls[0] == (5, max(len(p) for p in prompts))  # one prefill call for all five
    for a, t in zip(alone, together, strict=True):
        # Padding is invisible to the real tokens: the first token's log-probability is the same.
        assert abs(a.outputs[0].logprobs[0] - t.outputs[0].logprobs[0]) < 1e-4
        assert t.outputs[0].token_ids[:8] == a.outputs[0].token_ids[:8]


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps(engine: Any) -> None:
    eng = LocalEngine.load(
        "smollm2", cache_dir=str(_cache(engine)), prefix_caching=False, max_prefill_tokens=64
    )
    calls = _record_model_calls(eng)
    long = _ids(eng, "Summarize: " + "The quick brown fox jumps over the lazy dog. " * 25)
    assert 256 < len(long) < 512  # one call in the default engine, five chunks here
    try:
        counting = SamplingParams(temperature=0, max_tokens=40, min_tokens=40)
        short = eng.submit(_ids(eng, "Count to twenty."), counting)
        next(iter(short))  # it is decoding
        chunked = eng.generate(long, GREEDY)
        short.result()
    finally:
        eng.close()
    chunks = [i for i, shape in enumerate(calls) if shape == (1, 64)]
    assert len(chunks) == len(long) // 64
    # The short request kept decoding (batch-1 steps) while the long prompt was computed.
    assert any(calls[i] == (1, 1) for i in range(chunks[0], chunks[-1]))
    whole = engine.generate(long, GREEDY)
    assert abs(chunked.outputs[0].logprobs[0] - whole.outputs[0].logprobs[0]) < 1e-4
    assert chunked.outputs[0].token_ids[:8] == whole.outputs[0].token_ids[:8]


def test_requests_from_many_threads(engine: Any, chat_prompts: list[str]) -> None:
    results: dict[int, list[int]] = {}

    def worker(i: int) -> None:
        out = engine.generate(_ids(engine, chat_prompts[i]), SamplingParams(temperature=0, max_tokens=6))
        results[i] = out.outputs[0].token_ids

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == list(range(5)) and all(results.values())


def test_streaming_events_add_up_to_the_result(engine: Any) -> None:
    handle = engine.submit(
        _ids(engine, "Count from one to five."), SamplingParams(temperature=0, max_tokens=20)
    )
    events = list(handle)
    out = handle.result()
    assert "".join(e.text for e in events) == out.outputs[0].text
    assert [e.token_id for e in events] == out.outputs[0].token_ids
    assert events[-1].finish_reason in ("stop", "length") and all(
        e.finish_reason is None for e in events[:-1]
    )
    assert out.prompt_tokens == len(out.prompt_token_ids) and out.completion_tokens == len(events)


def test_async_streaming(engine: Any) -> None:
    async def consume() -> list[str]:
        handle = engine.submit(_ids(engine, "Say hello."), SamplingParams(temperature=0, max_tokens=8))
        return [e.text async for e in handle]

    assert "".join(asyncio.run(consume()))


def test_an_async_consumer_that_leaves_cancels_its_request(engine: Any) -> None:
    async def leave_early() -> Any:
        handle = engine.submit(_ids(engine, "Tell me a long story."), SamplingParams(max_tokens=300))
        async for _ in handle:
            break  # the client went away after one token
        return handle

    handle = asyncio.run(leave_early())
    out = handle.result(timeout=120)
    assert out.outputs[0].finish_reason == "cancelled" and len(out.outputs[0].token_ids) < 300
    engine.generate([1, 2, 3], SamplingParams(max_tokens=1))  # the engine still serves
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_cancel_frees_the_blocks(engine: Any) -> None:
    handle = engine.submit(
        _ids(engine, "Tell me a long story."), SamplingParams(temperature=0, max_tokens=400)
    )
    seen = []
    for ev in handle:
        seen.append(ev)
        if len(seen) == 3:
            handle.cancel()
    assert seen[-1].finish_reason == "cancelled" and len(seen) < 50
    assert handle.result().outputs[0].finish_reason == "cancelled"
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_max_tokens_and_stop_strings(engine: Any) -> None:
    prompt = _ids(engine, "What is the capital of France?")
    full = engine.generate(prompt, SamplingParams(temperature=0, max_tokens=30)).outputs[0]
    assert "Paris" in full.text
    cut = engine.generate(prompt, SamplingParams(temperature=0, max_tokens=30, stop=["Paris"])).outputs[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index("Paris")]
    short = engine.generate(prompt, SamplingParams(temperature=0, max_tokens=3)).outputs[0]
    assert short.finish_reason == "length" and len(short.token_ids) == 3
    stop_tok = engine.generate(
        prompt, SamplingParams(temperature=0, max_tokens=30, stop_token_ids=[full.token_ids[2]])
    )
    assert stop_tok.outputs[0].token_ids == full.token_ids[:3]


def test_seeded_sampling_repeats_and_n_samples_differ(engine: Any) -> None:
    prompt = _ids(engine, "Invent a name for a cat.")
    params = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_tokens=12, seed=123, n=3)
    a, b = engine.generate(prompt, params), engine.generate(prompt, params)
    assert [c.text for c in a.outputs] == [c.text for c in b.outputs]
    assert len({c.text for c in a.outputs}) > 1


def test_best_of_returns_the_most_likely_samples(engine: Any) -> None:
    prompt = _ids(engine, "Invent a name for a dog.")
    out = engine.generate(prompt, SamplingParams(temperature=1.2, max_tokens=10, seed=5, n=2, best_of=5))
    assert [c.index for c in out.outputs] == [0, 1]
    assert out.outputs[0].mean_logprob >= out.outputs[1].mean_logprob
    assert out.completion_tokens >= 5  # all five were drawn


def test_logprobs(engine: Any) -> None:
    prompt = _ids(engine, "What is 2 + 2?")
    out = engine.generate(prompt, SamplingParams(temperature=0, max_tokens=5, logprobs=True, top_logprobs=3))
    events = list(engine.submit(prompt, SamplingParams(temperature=0, max_tokens=5, top_logprobs=3)))
    # The second run reuses the first's prompt KV, so values agree to rounding, not bit for bit.
    for kept, streamed in zip(out.outputs[0].top_logprobs, [ev.top_logprobs for ev in events], strict=True):
        assert [t for t, _ in kept] == [t for t, _ in streamed]
        assert [lp for _, lp in kept] == pytest.approx([lp for _, lp in streamed], abs=1e-4)
    for c, ev in zip(out.outputs[0].token_ids, events, strict=False):
        assert ev.token_id == c and ev.top_logprobs[0][0] == c  # greedy picks the top token
        assert (
            ev.logprob is not None and ev.logprob <= 0 and ev.logprob == pytest.approx(ev.top_logprobs[0][1])
        )


def test_shared_system_prompt_hits_the_prefix_cache(engine: Any) -> None:
    system = "You are a terse assistant. " * 12
    before = engine.stats()["prefix_cache"]["hit_tokens"]
    first = engine.generate(_ids(engine, "Name a colour.", system), GREEDY)
    second = engine.generate(_ids(engine, "Name a fruit.", system), GREEDY)
    assert first.cached_tokens == 0 or first.cached_tokens < second.cached_tokens
    assert second.cached_tokens >= 64
    assert engine.stats()["prefix_cache"]["hit_tokens"] - before >= second.cached_tokens
    # Reused KV gives the same tokens as computing the prompt afresh.
    fresh = LocalEngine.load("smollm2", cache_dir=str(_cache(engine)), prefix_caching=False, num_blocks=64)
    try:
        assert (
            fresh.generate(_ids(engine, "Name a fruit.", system), GREEDY).outputs[0].token_ids
            == second.outputs[0].token_ids
        )
    finally:
        fresh.close()


def test_requests_that_arrive_together_still_share_their_prefix(engine: Any) -> None:
    # The second waits one step for the first's blocks instead of computing them beside them.
    system = "You answer in one word. " * 12
    with engine._wake:
        handles = [engine.submit(_ids(engine, q, system), GREEDY) for q in ("A colour?", "A fruit?")]
    first, second = (h.result() for h in handles)
    assert second.cached_tokens >= 64 and second.cached_tokens > first.cached_tokens


def _cache(engine: Any) -> Path:
    return Path(engine.config.cache_dir)


def test_out_of_blocks_requests_wait_and_all_finish(engine: Any, chat_prompts: list[str]) -> None:
    # 10 blocks of 16 = 160 slots; each request needs ~75, so at most two run at once.
    small = LocalEngine.load("smollm2", cache_dir=str(_cache(engine)), num_blocks=10, prefix_caching=False)
    try:
        params = SamplingParams(temperature=0, max_tokens=30, min_tokens=30)
        handles = [small.submit(_ids(small, p), params) for p in chat_prompts[:5]]
        outs = [h.result(timeout=300) for h in handles]
        assert all(len(o.outputs[0].token_ids) == 30 for o in outs)
        assert small.blocks.num_free == 10 and small.stats()["running"] == 0
    finally:
        small.close()


def test_a_token_constraint_restricts_the_output(engine: Any) -> None:
    allowed = [engine.tokenizer.encode(w)[0] for w in (" yes", " no")]

    class YesNo:
        def __init__(self) -> None:
            self.count = 0

        def mask_logits(self, logits: torch.Tensor) -> None:
            keep = logits[allowed].clone()
            logits.fill_(float("-inf"))
            logits[allowed] = keep

        def accept_token(self, token_id: int) -> None:
            assert token_id in allowed
            self.count += 1

        def is_terminated(self) -> bool:
            return self.count >= 3

    out = engine.generate(
        _ids(engine, "Is the sky blue?"), SamplingParams(temperature=0.7, seed=1), constraint=YesNo
    )
    assert len(out.outputs[0].token_ids) == 3 and set(out.outputs[0].token_ids) <= set(allowed)
    assert out.outputs[0].finish_reason == "stop"


def test_bad_requests_raise_request_errors(engine: Any) -> None:
    with pytest.raises(RequestError) as err:
        engine.submit([5] * (engine.max_model_len + 1))
    assert err.value.param == "messages" and err.value.code == "context_length_exceeded"
    with pytest.raises(RequestError) as err:
        engine.submit([5, 6], SamplingParams(max_tokens=engine.max_model_len))
    assert err.value.param == "max_tokens"
    with pytest.raises(RequestError):
        engine.submit([])
    with pytest.raises(RequestError):
        engine.submit([10**7])
