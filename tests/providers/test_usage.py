"""Usage accounting through langchain callbacks, per call, per node and per run."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from graphwright.plugins import Registry
from graphwright.providers import PriceTable, ProviderError, UsageRecorder
from graphwright.testing.provider_suite import OpenAIStubServer

PRICES = {"prices": {"openai:stub": {"input": 1.0, "output": 2.0}, "scripted:*": {"input": 0.5}}}


def test_cost_from_the_price_table() -> None:
    table = PriceTable.model_validate(PRICES)
    assert table.cost("openai", "stub", 1_000_000, 500_000) == pytest.approx(2.0)
    assert table.cost("scripted", "anything", 2_000_000, 10) == pytest.approx(1.0)
    assert table.cost("openai", "unknown", 10, 10) is None


def test_price_table_from_a_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "prices.yaml"
    path.write_text("prices:\n  'openai:stub': {input: 1.0, output: 2.0}\n")
    assert PriceTable.from_file(path).cost("openai", "stub", 10**6, 0) == pytest.approx(1.0)


def test_openai_calls_are_recorded_with_tokens_latency_and_ttft(registry: Registry) -> None:
    with OpenAIStubServer() as server:
        model = registry.build("provider", "openai",
                               {"base_url": server.url, "api_key": "k", "model": "stub"})
        rec = UsageRecorder(PRICES)
        model.invoke("one two three", config={"callbacks": [rec]})
        list(model.stream("four five", config={"callbacks": [rec]}))
    first, second = rec.calls
    assert (first.provider, first.model) == ("openai", "stub")
    assert first.input_tokens == 3 and first.output_tokens == 4  # "echo: one two three"
    assert first.latency_s > 0 and first.ttft_s is None
    assert second.ttft_s is not None and 0 < second.ttft_s <= second.latency_s
    assert first.cost == pytest.approx((3 * 1.0 + 4 * 2.0) / 1e6)
    total = rec.totals()
    assert total["calls"] == 2 and total["input_tokens"] == 5


def test_sums_per_node_in_a_graph(registry: Registry) -> None:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict, total=False):
        q: str
        a: str
        b: str

    model = registry.build("provider", "scripted", {"default": "two words"})

    async def ask_a(state: S) -> dict[str, Any]:
        return {"a": (await model.ainvoke(state["q"])).content}

    def ask_b(state: S) -> dict[str, Any]:
        model.invoke("x y")
        return {"b": model.invoke(state["q"]).content}

    graph = StateGraph(S)
    graph.add_node("node_a", ask_a)
    graph.add_node("node_b", ask_b)
    graph.add_edge(START, "node_a")
    graph.add_edge("node_a", "node_b")
    graph.add_edge("node_b", END)
    rec = UsageRecorder(PRICES)
    asyncio.run(graph.compile().ainvoke({"q": "hello there"}, {"callbacks": [rec]}))
    per_node = rec.per_node()
    assert per_node["node_a"]["calls"] == 1 and per_node["node_b"]["calls"] == 2
    assert per_node["node_b"]["input_tokens"] == 4 and per_node["node_b"]["output_tokens"] == 4
    assert rec.totals()["calls"] == 3
    assert rec.totals()["cost"] == pytest.approx(6 * 0.5 / 1e6)
    record = rec.to_dict()
    json.dumps(record)  # JSON-ready for the run record
    assert {c["node"] for c in record["calls"]} == {"node_a", "node_b"}


def test_failed_calls_are_recorded_as_errors(registry: Registry) -> None:
    model = registry.build("provider", "scripted", {
        "replies": [{"error": {"status": 400, "message": "bad request"}}],
    })
    rec = UsageRecorder()
    with pytest.raises(ProviderError):
        model.invoke("x", config={"callbacks": [rec]})
    assert rec.calls[0].error and "ProviderError" in rec.calls[0].error
    assert rec.totals()["errors"] == 1
