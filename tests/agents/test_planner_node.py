"""The `planner` node kind: plan, execute with an agent, re-plan on failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from graphwright.agents import PlanFailed, PlannerConfig, planner_node
from graphwright.graphs import compile_spec
from graphwright.plugins import NodeContext, Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make(registry: Registry, **with_: Any) -> Any:
    return planner_node(PlannerConfig.model_validate(with_), NodeContext("plan", registry, None, {}))


def test_example_spec_replans_after_a_failed_step(registry: Registry) -> None:
    graph = compile_spec(EXAMPLES / "planner_trip.yaml", registry=registry)
    out = asyncio.run(graph.ainvoke({"question": "What does the trip cost?"}))
    assert out["answer"] == "The trip costs 285 in total."
    steps = out["plan"]["steps"]
    assert [s["ok"] for s in steps] == [False, True]
    assert steps[1]["result"] == "285" and out["plan"]["replans"] == 1


def test_steps_run_in_order_with_earlier_results(registry: Registry) -> None:
    node = make(registry, tools=["calculator"], model={"provider": "scripted", "rules": [
        {"match": "Make a short plan", "content": '{"steps": ["first", "second"]}'},
        {"match": "Your step: first", "content": "result one"},
        {"match": "Your step: second", "content": "result two"},
        {"match": "Write the final answer", "content": "all done"},
    ]})
    out = asyncio.run(node({"question": "task"}))
    assert out["answer"] == "all done"
    prompts = [c.messages[-1].content for c in node.model.calls]
    second = next(p for p in prompts if "Your step: second" in p)
    assert "- first: result one" in second
    final = prompts[-1]
    assert "- first: result one" in final and "- second: result two" in final


def test_replan_budget_is_enforced(registry: Registry) -> None:
    node = make(registry, max_replans=1, model={"provider": "scripted", "rules": [
        {"match": "Make a (short|new) plan", "content": '{"steps": ["impossible"]}'},
        {"match": "Your step", "content": "FAILED: cannot"},
    ]})
    with pytest.raises(PlanFailed, match="re-plan budget \\(1\\) is spent"):
        asyncio.run(node({"question": "task"}))


def test_an_empty_plan_is_an_error(registry: Registry) -> None:
    node = make(registry, model={"provider": "scripted", "default": '{"steps": []}'})
    with pytest.raises(PlanFailed, match="empty plan"):
        asyncio.run(node({"question": "task"}))
