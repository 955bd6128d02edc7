"""Usage accounting: one record per model call and per tool call, summed per node and run.

The runner hands a `UsageRecorder` to `graph.astream(..., config={"callbacks": [rec]})`;
langchain propagates callbacks into every model call made inside a node, and
tags them with the langgraph node name (`metadata["langgraph_node"]`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from pydantic import BaseModel, ConfigDict, Field

from graphwright.providers._reliable import CACHE_INFO_KEY
from graphwright.providers._secrets import scrub


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class PriceTable(BaseModel):
    """Prices keyed `provider:model`, `model`, or `provider:*` (most specific wins)."""

    model_config = ConfigDict(extra="forbid")

    prices: dict[str, Price] = Field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """A price table from YAML or JSON: `{prices: {"openai:gpt-4o-mini": {input: .15, output: .6}}}`."""
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.model_validate(data)

    def cost(self, provider: str | None, model: str | None, inp: int, out: int) -> float | None:
        for key in (f"{provider}:{model}", f"{model}", f"{provider}:*"):
            price = self.prices.get(key)
            if price is not None:
                return (inp * price.input + out * price.output) / 1_000_000
        return None  # unknown price: say so rather than report $0


@dataclass
class CallRecord:
    """One model call."""

    node: str | None
    provider: str | None
    model: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    cost: float | None = None
    cache: str | None = None  # "hit" | "miss" | None (cache off or not deterministic)
    error: str | None = None
    prompt_version: str | None = None
    prompt_hash: str | None = None


@dataclass
class ToolRecord:
    """One tool call."""

    node: str | None
    tool: str
    latency_s: float = 0.0
    error: str | None = None


def _error_text(error: BaseException) -> str:
    first = (str(error).splitlines() or [""])[0]
    return scrub(f"{type(error).__name__}: {first}")[:300]


@dataclass
class _Open:
    started: float
    record: CallRecord | ToolRecord
    first_token: float | None = None


def _sum(calls: list[CallRecord], tools: list[ToolRecord]) -> dict[str, Any]:
    costs = [c.cost for c in calls if c.cost is not None]
    return {
        "calls": len(calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "latency_s": round(sum(c.latency_s for c in calls), 6),
        # A total over calls with unknown price would understate: None instead.
        "cost": round(sum(costs), 8) if len(costs) == len(calls) else None,
        "cache_hits": sum(c.cache == "hit" for c in calls),
        "cache_misses": sum(c.cache == "miss" for c in calls),
        "errors": sum(c.error is not None for c in calls),
        "tool_calls": len(tools),
        "tool_errors": sum(t.error is not None for t in tools),
    }


class UsageRecorder(BaseCallbackHandler):
    """Collects `CallRecord`s and `ToolRecord`s from langchain callbacks."""

    run_inline = True  # keep callbacks in order and in-thread, even from async code
    raise_error = False

    def __init__(self, prices: PriceTable | dict[str, Any] | None = None) -> None:
        super().__init__()
        if prices is None:
            self.prices = PriceTable()
        elif isinstance(prices, PriceTable):
            self.prices = prices
        else:
            self.prices = PriceTable.model_validate(prices)
        self.calls: list[CallRecord] = []
        self.tools: list[ToolRecord] = []
        self._open: dict[UUID, _Open] = {}
        self._lock = threading.Lock()

    # -- model calls -----------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        meta = metadata or {}
        record = CallRecord(
            node=meta.get("langgraph_node"),
            provider=meta.get("ls_provider"),
            model=meta.get("ls_model_name"),
            prompt_version=meta.get("prompt_version"),
            prompt_hash=meta.get("prompt_hash"),
        )
        with self._lock:
            self._open[run_id] = _Open(time.perf_counter(), record)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        with self._lock:
            entry = self._open.get(run_id)
            if entry is not None and entry.first_token is None:
                entry.first_token = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            entry = self._open.pop(run_id, None)
        if entry is None or not isinstance(entry.record, CallRecord):
            return
        rec = entry.record
        now = time.perf_counter()
        rec.latency_s = round(now - entry.started, 6)
        if entry.first_token is not None:
            rec.ttft_s = round(entry.first_token - entry.started, 6)
        for gens in response.generations:
            for gen in gens:
                message = getattr(gen, "message", None)
                usage = getattr(message, "usage_metadata", None) or {}
                rec.input_tokens += int(usage.get("input_tokens", 0) or 0)
                rec.output_tokens += int(usage.get("output_tokens", 0) or 0)
                info = gen.generation_info or {}
                rec.cache = info.get(CACHE_INFO_KEY, rec.cache)
        if not rec.input_tokens and response.llm_output:
            usage = response.llm_output.get("token_usage") or {}
            rec.input_tokens = int(usage.get("prompt_tokens", 0) or 0)
            rec.output_tokens = int(usage.get("completion_tokens", 0) or 0)
        # A cache hit costs nothing: no request was sent.
        rec.cost = 0.0 if rec.cache == "hit" else self.prices.cost(
            rec.provider, rec.model, rec.input_tokens, rec.output_tokens
        )
        with self._lock:
            self.calls.append(rec)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            entry = self._open.pop(run_id, None)
        if entry is None or not isinstance(entry.record, CallRecord):
            return
        entry.record.latency_s = round(time.perf_counter() - entry.started, 6)
        entry.record.error = _error_text(error)
        with self._lock:
            self.calls.append(entry.record)

    # -- tool calls ------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = (serialized or {}).get("name") or kwargs.get("name") or "?"
        record = ToolRecord(node=(metadata or {}).get("langgraph_node"), tool=str(name))
        with self._lock:
            self._open[run_id] = _Open(time.perf_counter(), record)

    def _tool_done(self, run_id: UUID, error: str | None) -> None:
        with self._lock:
            entry = self._open.pop(run_id, None)
            if entry is None or not isinstance(entry.record, ToolRecord):
                return
            entry.record.latency_s = round(time.perf_counter() - entry.started, 6)
            entry.record.error = error
            self.tools.append(entry.record)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, _error_text(error))

    # -- reading ---------------------------------------------------------
    def per_node(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            calls, tools = list(self.calls), list(self.tools)
        nodes = sorted({c.node or "" for c in calls} | {t.node or "" for t in tools})
        return {
            n: _sum([c for c in calls if (c.node or "") == n], [t for t in tools if (t.node or "") == n])
            for n in nodes
        }

    def totals(self) -> dict[str, Any]:
        with self._lock:
            return _sum(list(self.calls), list(self.tools))

    def to_dict(self) -> dict[str, Any]:
        """The usage part of a run record (JSON-ready; never holds prompts or keys)."""
        with self._lock:
            calls = [asdict(c) for c in self.calls]
            tools = [asdict(t) for t in self.tools]
        return {"calls": calls, "tool_calls": tools, "per_node": self.per_node(), "total": self.totals()}


__all__ = ["CallRecord", "Price", "PriceTable", "ToolRecord", "UsageRecorder"]
