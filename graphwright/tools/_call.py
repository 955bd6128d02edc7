"""Running a model's tool call so that nothing it sends can crash a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphwright.tools._budget import ToolBudget, ToolBudgetExceeded
from graphwright.tools._tool import Tool, ToolError


@dataclass(frozen=True)
class ToolOutcome:
    """What goes back to the model as a tool message."""

    name: str
    call_id: str
    content: str
    error: bool


def _error(name: str, call_id: str, text: str) -> ToolOutcome:
    return ToolOutcome(name, call_id, f"Error: {text}", True)


async def execute_tool_call(
    tools: Mapping[str, Tool],
    call: Mapping[str, Any],
    *,
    budget: ToolBudget | None = None,
) -> ToolOutcome:
    """Run one tool call; every failure becomes an error outcome the model can read.

    `call` is a langchain tool call (`name`, `args` dict, `id`) or an invalid
    tool call (`args` a raw string, `error` set) from a model that sent bad JSON.
    `tools` holds only the tools this agent may use: anything else is refused.
    """
    name = str(call.get("name") or "")
    call_id = str(call.get("id") or "")
    tool = tools.get(name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return _error(name, call_id, f"unknown tool {name!r}; available tools: {known}")
    if call.get("error"):
        return _error(
            name, call_id, f"arguments for tool {name!r} are not valid JSON ({call['error']}); "
            f"you sent: {str(call.get('args'))[:200]}"
        )
    try:
        if budget is not None:
            budget.take()
        content = await tool.arun(call.get("args"))
    except ToolBudgetExceeded as exc:
        return _error(name, call_id, str(exc))
    except ToolError as exc:
        return _error(name, call_id, str(exc))
    except Exception as exc:  # a tool bug is the model's problem to route around, not a crash
        return _error(name, call_id, f"tool {name!r} raised {type(exc).__name__}: {exc}")
    return ToolOutcome(name, call_id, content, False)
