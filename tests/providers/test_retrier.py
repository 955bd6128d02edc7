"""The retry layer on its own: backoff, jitter, classification, the final error."""

from __future__ import annotations

import asyncio

import pytest

from graphwright.plugins import Registry
from graphwright.providers import ProviderError, Retrier, RetryConfig, classify
from graphwright.providers._scripted import ScriptedHTTPError
from graphwright.testing.provider_suite import Fault, OpenAIStubServer


class Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    slept: list[float] = []
    cfg = RetryConfig(attempts=6, initial_wait=1.0, max_wait=4.0)
    retrier = Retrier(cfg, provider="p", model="m", sleep=slept.append)
    fn = Flaky([ConnectionError("reset")] * 5)
    assert retrier.call(fn) == "done" and fn.calls == 6
    # step n waits within [step/2, step], step = min(max_wait, initial * 2**(n-1))
    for n, wait in enumerate(slept, start=1):
        step = min(4.0, 2 ** (n - 1))
        assert step / 2 <= wait <= step


def test_wait_multiplier_zero_never_sleeps() -> None:
    slept: list[float] = []
    retrier = Retrier(RetryConfig(attempts=3, wait_multiplier=0), provider="p", model=None,
                      sleep=slept.append)
    assert retrier.call(Flaky([TimeoutError(), TimeoutError()])) == "done"
    assert slept == [0.0, 0.0]


def test_exhausted_attempts_make_one_error_listing_each() -> None:
    retrier = Retrier(RetryConfig(attempts=3, wait_multiplier=0), provider="p", model="m",
                      sleep=lambda s: None)
    fn = Flaky([ScriptedHTTPError(503, "busy", None)] * 3)
    with pytest.raises(ProviderError) as info:
        retrier.call(fn)
    err = info.value
    assert fn.calls == 3 and len(err.attempts) == 3 and err.retryable
    assert [a.status for a in err.attempts] == [503, 503, 503]
    assert all(a.elapsed >= 0 for a in err.attempts)
    assert isinstance(err.__cause__, ScriptedHTTPError)


def test_unknown_exceptions_are_not_retried() -> None:
    retrier = Retrier(RetryConfig(attempts=5), provider="p", model="m")
    fn = Flaky([ValueError("bad input")])
    with pytest.raises(ProviderError, match="not retried") as info:
        retrier.call(fn)
    assert fn.calls == 1 and not info.value.retryable


def test_async_path_retries_too() -> None:
    retrier = Retrier(RetryConfig(attempts=3, wait_multiplier=0), provider="p", model="m")
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ScriptedHTTPError(429, "slow down", 0.5)
        return "ok"

    assert asyncio.run(retrier.acall(fn)) == "ok" and calls == 3


@pytest.mark.parametrize(
    ("exc", "retryable", "status"),
    [
        (ScriptedHTTPError(429, "x", 1.5), True, 429),
        (ScriptedHTTPError(408, "x", None), True, 408),
        (ScriptedHTTPError(409, "x", None), True, 409),
        (ScriptedHTTPError(500, "x", None), True, 500),
        (ScriptedHTTPError(400, "x", None), False, 400),
        (ScriptedHTTPError(404, "x", None), False, 404),
        (TimeoutError(), True, None),
        (ConnectionResetError(), True, None),
        (KeyError("k"), False, None),
    ],
)
def test_classify(exc: Exception, retryable: bool, status: int | None) -> None:
    failure = classify(exc)
    assert (failure.retryable, failure.status) == (retryable, status)


def test_retry_after_header_is_read() -> None:
    assert classify(ScriptedHTTPError(429, "x", 2.5)).retry_after == 2.5


def test_scripted_errors_go_through_the_same_layer(registry: Registry) -> None:
    model = registry.build("provider", "scripted", {
        "replies": [{"error": {"status": 429}}, {"error": {"status": 502}}, "finally"],
        "retry": {"attempts": 3, "wait_multiplier": 0},
    })
    assert model.invoke("hi").content == "finally"
    assert len(model.calls) == 3


def test_stream_broken_after_first_chunk_is_not_retried(registry: Registry) -> None:
    # Retrying after text went out would repeat it to the reader: one typed error instead.
    with OpenAIStubServer(fault=lambda body, hit: Fault("cut")) as server:
        model = registry.build("provider", "openai", {
            "base_url": server.url, "api_key": "k", "model": "stub",
            "retry": {"attempts": 4, "wait_multiplier": 0},
        })
        seen: list[str] = []
        with pytest.raises(ProviderError, match="stream broke after") as info:
            for chunk in model.stream("hi"):
                seen.append(str(chunk.content))
        assert server.log["hi"] == ["cut"]
        assert "partial " in "".join(seen)
        assert not info.value.retryable
