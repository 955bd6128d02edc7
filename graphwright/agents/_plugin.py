"""The built-in agent node kinds as registry components."""

from __future__ import annotations

from typing import Any

from graphwright.plugins import Component, NodeContext


def _lazy(module: str, factory: str) -> Any:
    # Node modules import langchain-core; load them only when a node is built.
    def build(config: Any, ctx: NodeContext) -> Any:
        import importlib

        return getattr(importlib.import_module(f"graphwright.agents.{module}"), factory)(config, ctx)

    build.__name__ = factory
    return build


def components() -> list[Component]:
    """Components of kind `node_kind`, for `register_node_kinds`."""
    from graphwright.agents._configs import (
        AgentConfig,
        LLMConfig,
        PlannerConfig,
        RouterConfig,
        ToolNodeConfig,
    )

    return [
        Component("llm", _lazy("_llm", "llm_node"), config=LLMConfig,
                  description="one model call with a jinja2 prompt; few-shot, CoT, structured output"),
        Component("agent", _lazy("_agent", "agent_node"), config=AgentConfig,
                  description="tool-calling (ReAct) loop with a system prompt and a tool list"),
        Component("router", _lazy("_router", "router_node"), config=RouterConfig,
                  description="rules or a model pick the next node from named choices"),
        Component("planner", _lazy("_planner", "planner_node"), config=PlannerConfig,
                  description="plan steps, execute each with a tool agent, re-plan on failure"),
        Component("tool", _lazy("_tool_node", "tool_node"), config=ToolNodeConfig,
                  description="call one tool with arguments from channels (no model)"),
    ]
