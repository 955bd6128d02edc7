"""Exactly one retry layer for model calls (tenacity), outside the SDK.

The SDK's own retries are switched off (`max_retries=0`) wherever this wraps
it: stacked layers multiply (3 SDK x 6 ours x 3 graph = 54 calls per request).
"""

from __future__ import annotations

import email.utils
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

from graphwright.providers._errors import Attempt, ProviderError
from graphwright.providers._secrets import scrub

T = TypeVar("T")

# 408 Request Timeout, 409 Conflict and 429 Too Many Requests are the only 4xx
# a retry can fix; any other 4xx would fail the same way again.
RETRYABLE_4XX = frozenset({408, 409, 429})


class RetryConfig(BaseModel):
    """Retry settings of one provider, as written under `retry:` in a spec."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=6, ge=1, le=100, description="total tries, the first included")
    initial_wait: float = Field(default=0.5, ge=0, description="seconds; doubles per attempt")
    max_wait: float = Field(default=20.0, ge=0, description="cap on one wait, seconds")
    timeout: float | None = Field(default=60.0, gt=0, description="per-call timeout, seconds")
    wait_multiplier: float = Field(
        default=1.0, ge=0, description="scales every wait (Retry-After too); 0 in tests"
    )
    respect_retry_after: bool = True


@dataclass(frozen=True)
class Failure:
    """What an exception means for retrying."""

    retryable: bool
    status: int | None
    retry_after: float | None
    text: str


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except Exception:  # headers of an unknown shape: no hint, not a crash
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    # Checked by module so that classifying never imports the SDKs.
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(exc, openai.APIConnectionError):
        return True  # APITimeoutError is a subclass
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.TimeoutException | httpx.TransportError)


def classify(exc: BaseException) -> Failure:
    """Decide whether `exc` is worth another attempt."""
    lines = f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__]
    text = scrub(lines[0])[:300]
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status", None)
    if isinstance(status, int):
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
        retryable = status >= 500 or status in RETRYABLE_4XX
        return Failure(retryable, status, _retry_after(headers), text)
    return Failure(_is_transport_error(exc), None, None, text)


class Retrier:
    """Runs one call with backoff and jitter; raises one `ProviderError` at the end."""

    def __init__(
        self,
        config: RetryConfig,
        *,
        provider: str,
        model: str | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config, self.provider, self.model = config, provider, model
        self._sleep = sleep

    def _wait_for(self, failure: Failure, attempt_number: int) -> float:
        cfg = self.config
        if failure.retry_after is not None and cfg.respect_retry_after:
            base = failure.retry_after
        else:
            # "equal jitter": half the exponential step is fixed, half random,
            # so waits spread out but never collapse to zero.
            step = min(cfg.max_wait, cfg.initial_wait * 2 ** (attempt_number - 1))
            base = step / 2 + random.uniform(0, step / 2)
        return base * cfg.wait_multiplier

    def _controller(self, attempts: list[Attempt], started: float, asynchronous: bool) -> Any:
        cfg = self.config

        def retry(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            return exc is not None and classify(exc).retryable

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= cfg.attempts:
                return True
            exc = state.outcome.exception() if state.outcome else None
            failure = classify(exc) if exc else None
            # A server asking for a longer pause than we may wait: stop now
            # rather than hammer it or sleep past the budget.
            return bool(
                failure
                and failure.retry_after is not None
                and cfg.respect_retry_after
                and failure.retry_after > cfg.max_wait
            )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._wait_for(classify(exc), state.attempt_number) if exc else 0.0

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            failure = classify(exc) if exc else Failure(True, None, None, "?")
            delay = state.next_action.sleep if state.next_action else 0.0
            attempts.append(
                Attempt(
                    state.attempt_number,
                    failure.status,
                    failure.text,
                    round(time.monotonic() - started, 6),
                    round(delay, 6),
                )
            )

        common: dict[str, Any] = dict(
            retry=retry, stop=stop, wait=wait, before_sleep=before_sleep, reraise=True
        )
        if asynchronous:
            return tenacity.AsyncRetrying(**common)
        return tenacity.Retrying(sleep=self._sleep, **common)

    def _final(self, exc: Exception, attempts: list[Attempt], started: float) -> ProviderError:
        failure = classify(exc)
        attempts.append(
            Attempt(
                len(attempts) + 1,
                failure.status,
                failure.text,
                round(time.monotonic() - started, 6),
            )
        )
        reason = ""
        if (
            failure.retryable
            and failure.retry_after is not None
            and self.config.respect_retry_after
            and failure.retry_after > self.config.max_wait
            and len(attempts) < self.config.attempts
        ):
            reason = (
                f"server asked to retry after {failure.retry_after:.1f}s, more than "
                f"max_wait {self.config.max_wait:.1f}s; gave up after {len(attempts)} attempt(s)"
            )
        err = ProviderError(
            self.provider, self.model, attempts, retryable=failure.retryable, reason=reason
        )
        err.__cause__ = exc
        return err

    def call(self, fn: Callable[[], T]) -> T:
        attempts: list[Attempt] = []
        started = time.monotonic()
        try:
            for attempt in self._controller(attempts, started, asynchronous=False):
                with attempt:
                    return fn()
        except ProviderError:
            raise
        except Exception as exc:
            raise self._final(exc, attempts, started) from exc
        raise AssertionError("unreachable: tenacity ended without a result")  # pragma: no cover

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        attempts: list[Attempt] = []
        started = time.monotonic()
        try:
            async for attempt in self._controller(attempts, started, asynchronous=True):
                with attempt:
                    return await fn()
        except ProviderError:
            raise
        except Exception as exc:
            raise self._final(exc, attempts, started) from exc
        raise AssertionError("unreachable: tenacity ended without a result")  # pragma: no cover
