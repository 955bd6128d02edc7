"""The one error a provider call ends in when it does not succeed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One try of a provider call that failed.

    `elapsed` counts seconds from the start of the first attempt to this
    failure; `wait` is how long we slept before the next attempt (0 for the last).
    """

    number: int
    status: int | None
    error: str
    elapsed: float
    wait: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProviderError(Exception):
    """A model call that failed for good, with every attempt that was made.

    `retryable` says whether the last failure was of a transient kind (so the
    attempts ran out) or was refused outright (a 4xx such as 400/401/404).
    """

    def __init__(
        self,
        provider: str,
        model: str | None,
        attempts: list[Attempt],
        *,
        retryable: bool,
        reason: str = "",
    ) -> None:
        self.provider, self.model = provider, model
        self.attempts = list(attempts)
        self.retryable = retryable
        last = self.attempts[-1] if self.attempts else None
        self.status = last.status if last else None
        what = f"{provider}" + (f" model {model!r}" if model else "")
        if reason:
            head = f"{what}: {reason}"
        elif retryable:
            head = f"{what}: gave up after {len(self.attempts)} attempt(s)"
        else:
            head = f"{what}: request refused (not retried)"
        lines = [head]
        for a in self.attempts:
            status = a.status if a.status is not None else "-"
            lines.append(
                f"  attempt {a.number}: status {status}, {a.error} "
                f"(at {a.elapsed:.3f}s, then waited {a.wait:.3f}s)"
            )
        super().__init__("\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "retryable": self.retryable,
            "status": self.status,
            "attempts": [a.to_dict() for a in self.attempts],
        }
