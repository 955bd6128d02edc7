"""Agent node kinds, usable from YAML (`kind: agent`) and from Python.

- `llm`: one model call with a jinja2 prompt; few-shot, chain-of-thought, structured output
- `agent`: tool-calling (ReAct) loop; parallel tool calls; conversation in a messages channel
- `router`: rules or a model pick the next node from named choices; the pick is validated
- `planner`: plan as structured output, execute steps with an agent, re-plan on failure
- `tool`: one tool call as a graph step, arguments from channels (no model)

From Python: `agent_node(AgentConfig(model=chat_model, tools=[my_tool]), ctx)` gives the
node function; a ready `BaseChatModel` and `Tool` objects are accepted in place of names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphwright._lazy import lazy_exports
from graphwright.agents._common import ModelRef, ToolRef, build_model, build_tools
from graphwright.agents._configs import (
    AgentConfig,
    Example,
    LLMConfig,
    PlannerConfig,
    RouterConfig,
    RouteRule,
)
from graphwright.agents._plugin import components
from graphwright.agents._prompt import PromptTemplate

if TYPE_CHECKING:
    from graphwright.agents._agent import agent_node
    from graphwright.agents._llm import llm_node, split_answer
    from graphwright.agents._loop import LoopResult, react_loop
    from graphwright.agents._planner import Plan, PlanFailed, planner_node
    from graphwright.agents._router import RouteError, parse_choice, router_node
    from graphwright.agents._tool_node import tool_node

_LAZY = {
    "agent_node": "_agent",
    "llm_node": "_llm",
    "split_answer": "_llm",
    "LoopResult": "_loop",
    "react_loop": "_loop",
    "Plan": "_planner",
    "PlanFailed": "_planner",
    "planner_node": "_planner",
    "RouteError": "_router",
    "parse_choice": "_router",
    "router_node": "_router",
    "tool_node": "_tool_node",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AgentConfig",
    "Example",
    "LLMConfig",
    "LoopResult",
    "ModelRef",
    "Plan",
    "PlanFailed",
    "PlannerConfig",
    "PromptTemplate",
    "RouteError",
    "RouteRule",
    "RouterConfig",
    "ToolNodeConfig",
    "ToolRef",
    "agent_node",
    "build_model",
    "build_tools",
    "components",
    "llm_node",
    "parse_choice",
    "planner_node",
    "react_loop",
    "router_node",
    "split_answer",
    "tool_node",
]
