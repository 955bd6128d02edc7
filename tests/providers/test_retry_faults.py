"""One retry layer, driven through the real openai client against a loopback server
that injects 429 (with Retry-After), 5xx, 400, slow replies and dropped connections."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from graphwright.plugins import Registry
from graphwright.providers import ProviderError
from graphwright.testing.provider_suite import Fault, OpenAIStubServer

CALLS = 1000
ATTEMPTS = 4
SEED = 20261121


def _fault(body: dict[str, Any], hit: int) -> Fault | None:
    # Deterministic per (call, attempt): the same run injects the same faults.
    key = body["messages"][-1]["content"]
    r = random.Random(f"{SEED}:{key}:{hit}").random()
    if r < 0.10:
        return Fault("status", 429, retry_after=0.01)
    if r < 0.14:
        return Fault("status", 500)
    if r < 0.17:
        return Fault("status", 503)
    if r < 0.21:
        return Fault("drop")
    if r < 0.225:
        return Fault("slow", seconds=2.0)
    if r < 0.25:
        return Fault("status", 400)  # never retried
    return None


def _model(registry: Registry, url: str) -> Any:
    return registry.build(
        "provider",
        "openai",
        {
            "base_url": url,
            "api_key": "sk-test",
            "model": "stub",
            "retry": {"attempts": ATTEMPTS, "initial_wait": 0.001, "max_wait": 0.05,
                      "timeout": 1.5, "wait_multiplier": 1.0},
        },
    )


def test_thousand_calls_end_in_success_or_one_typed_error(registry: Registry) -> None:
    with OpenAIStubServer(fault=_fault) as server:
        model = _model(registry, server.url)
        limit = asyncio.Semaphore(16)

        async def one(i: int) -> tuple[int, Any]:
            async with limit:
                prompt = f"call-{i}"
                try:
                    if i % 5 == 0:
                        text = "".join([str(c.content) async for c in model.astream(prompt)])
                    else:
                        text = (await model.ainvoke(prompt)).content
                    return i, text
                except Exception as exc:  # collected and classified below
                    return i, exc

        async def run_all() -> list[tuple[int, Any]]:
            return await asyncio.gather(*(one(i) for i in range(CALLS)))

        results = asyncio.run(run_all())
        log = dict(server.log)

    outcomes: Counter[str] = Counter()
    for i, result in results:
        key = f"call-{i}"
        hits = log[key]
        assert len(hits) <= ATTEMPTS, f"{key}: {len(hits)} requests for one call: {hits}"
        if isinstance(result, str):
            outcomes["success"] += 1
            # the reply is this call's own, and the server completed it exactly once: the last
            # request, "ok", or "slow" when the client's 1.5 s timeout fired late on a busy loop
            # and the 2 s reply was already in (seen once in CI on 2 loaded cores)
            assert result == f"echo: {key}"
            assert hits[-1] in ("ok", "slow") and "ok" not in hits[:-1], hits
            continue
        assert isinstance(result, ProviderError), f"{key}: untyped {type(result).__name__}: {result}"
        outcomes["error"] += 1
        # one retry layer: every request the server saw is one attempt in the error
        assert len(result.attempts) == len(hits), (result.attempts, hits)
        assert "ok" not in hits
        assert [a.number for a in result.attempts] == list(range(1, len(hits) + 1))
        if hits[-1] == "status:400":
            outcomes["refused_400"] += 1
            assert not result.retryable and result.status == 400
        else:
            outcomes["exhausted"] += 1
            assert result.retryable and len(hits) == ATTEMPTS
    assert outcomes["success"] + outcomes["error"] == CALLS
    # the faults really happened, and retries really recovered from them
    all_hits = Counter(h for hits in log.values() for h in hits)
    assert all_hits["status:429"] > 50 and all_hits["drop"] > 20 and all_hits["slow"] > 5
    assert outcomes["success"] > 900
    assert outcomes["refused_400"] > 5
    recovered = sum(1 for hits in log.values() if len(hits) > 1 and hits[-1] == "ok")
    assert recovered > 150
    print(f"\n{dict(outcomes)}; server saw {dict(all_hits)}; recovered after retry: {recovered}")


def test_retry_after_is_honoured_and_waits_are_recorded(registry: Registry) -> None:
    def fault(body: dict[str, Any], hit: int) -> Fault | None:
        return Fault("status", 429, retry_after=0.2) if hit <= 2 else None

    with OpenAIStubServer(fault=fault) as server:
        model = registry.build(
            "provider", "openai",
            {"base_url": server.url, "api_key": "k", "model": "stub",
             "retry": {"attempts": 2, "initial_wait": 0.0, "wait_multiplier": 0.05}},
        )
        with pytest.raises(ProviderError) as info:
            model.invoke("hi")
        err = info.value
        assert [a.status for a in err.attempts] == [429, 429]
        # Retry-After 0.2 s, scaled by the multiplier: 0.01 s, not the 0.0 backoff
        assert err.attempts[0].wait == pytest.approx(0.01)
        assert "attempt 1: status 429" in str(err) and "gave up after 2 attempt(s)" in str(err)
        assert err.to_dict()["attempts"][1]["status"] == 429


def test_retry_after_longer_than_max_wait_stops_early(registry: Registry) -> None:
    with OpenAIStubServer(fault=lambda body, hit: Fault("status", 429, retry_after=120)) as server:
        model = registry.build(
            "provider", "openai",
            {"base_url": server.url, "api_key": "k", "model": "stub", "retry": {"max_wait": 5}},
        )
        with pytest.raises(ProviderError, match=r"retry after 120\.0s, more than max_wait") as info:
            model.invoke("hi")
        assert len(info.value.attempts) == 1 and server.log["hi"] == ["status:429"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried(registry: Registry, status: int) -> None:
    with OpenAIStubServer(fault=lambda body, hit: Fault("status", status)) as server:
        model = registry.build(
            "provider", "openai",
            {"base_url": server.url, "api_key": "k", "model": "stub",
             "retry": {"attempts": 5, "wait_multiplier": 0}},
        )
        with pytest.raises(ProviderError) as info:
            model.invoke("hi")
        assert server.log["hi"] == [f"status:{status}"]
        assert info.value.status == status and not info.value.retryable


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502])
def test_retryable_statuses_recover(registry: Registry, status: int) -> None:
    with OpenAIStubServer(fault=lambda body, hit: Fault("status", status) if hit == 1 else None) as server:
        model = registry.build(
            "provider", "openai",
            {"base_url": server.url, "api_key": "k", "model": "stub",
             "retry": {"attempts": 3, "wait_multiplier": 0}},
        )
        assert model.invoke("hi").content == "echo: hi"
        assert server.log["hi"] == [f"status:{status}", "ok"]
