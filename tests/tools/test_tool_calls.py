"""Running a model's tool calls: nothing a model sends crashes the run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graphwright.tools import ToolBudget, ToolBudgetExceeded, build_calculator, execute_tool_call, tool


@tool
def explode(x: int) -> int:
    """Always fails."""
    raise RuntimeError(f"kaboom {x}")


TOOLS = {"calculator": build_calculator(), "explode": explode}


def call(c: dict[str, Any], budget: ToolBudget | None = None) -> Any:
    return asyncio.run(execute_tool_call(TOOLS, c, budget=budget))


def test_good_call() -> None:
    out = call({"name": "calculator", "args": {"expression": "2+2"}, "id": "1"})
    assert (out.content, out.error, out.call_id) == ("4", False, "1")


@pytest.mark.parametrize(
    ("c", "message"),
    [
        ({"name": "rm_rf", "args": {}, "id": "1"},
         "unknown tool 'rm_rf'; available tools: calculator, explode"),
        ({"name": "calculator", "args": {"expr": "1"}, "id": "1"}, "expression: Field required"),
        ({"name": "calculator", "args": {"expression": 12}, "id": "1"}, "Input should be a valid string"),
        ({"name": "calculator", "args": "{bad", "id": "1", "error": "Expecting value"}, "not valid JSON"),
        ({"name": "calculator", "args": {"expression": "1/0"}, "id": "1"}, "division by zero"),
        ({"name": "explode", "args": {"x": 3}, "id": "1"}, "raised RuntimeError: kaboom 3"),
    ],
)
def test_failures_become_error_messages(c: dict[str, Any], message: str) -> None:
    out = call(c)
    assert out.error and out.content.startswith("Error: ") and message in out.content


def test_budget_is_shared_and_enforced() -> None:
    budget = ToolBudget(2)
    good = {"name": "calculator", "args": {"expression": "1+1"}, "id": "1"}
    assert not call(good, budget).error and not call(good, budget).error
    spent = call(good, budget)
    assert spent.error and "budget of 2 tool call(s) is spent" in spent.content
    assert budget.remaining == 0
    with pytest.raises(ToolBudgetExceeded):
        budget.take()
