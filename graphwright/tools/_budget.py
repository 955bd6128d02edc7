"""A budget of tool calls shared by every agent of one run."""

from __future__ import annotations

import threading


class ToolBudgetExceeded(Exception):
    pass


class ToolBudget:
    """Counts tool calls against a limit; thread-safe (tools run in worker threads)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("a tool budget must be >= 0")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise ToolBudgetExceeded(
                    f"the run's budget of {self.limit} tool call(s) is spent; answer with "
                    "what you have"
                )
            self.used += 1

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)
