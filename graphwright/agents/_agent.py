"""`agent`: a tool-calling (ReAct) loop as a graph node."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from graphwright.agents._common import build_model, build_tools, run_budget, text_of
from graphwright.agents._configs import AgentConfig
from graphwright.agents._loop import react_loop
from graphwright.agents._prompt import load_prompt
from graphwright.plugins import NodeContext

DEFAULT_SYSTEM = (
    "You are a careful assistant. Use the tools when they help; when a tool returns an "
    "error, read it and correct your call. When you know the answer, reply with it plainly."
)


def agent_node(config: AgentConfig, ctx: NodeContext) -> Callable[..., Any]:
    """Node kind factory of `agent`."""
    model = build_model(ctx, config.model)
    tools = build_tools(ctx, config.tools)
    system = load_prompt(config.system, config.system_file, ctx.base_dir, default=DEFAULT_SYSTEM)
    budget = run_budget(ctx, config.tool_budget)
    metadata = system.metadata() if system else None

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        history: list[BaseMessage] = list(state.get(config.messages) or []) if config.messages else []
        start: list[BaseMessage] = []
        if config.input and state.get(config.input) not in (None, ""):
            start.append(HumanMessage(text_of(state[config.input])))
        result = await react_loop(
            model,
            [*history, *start],
            tools=tools,
            system=system.render(dict(state)) if system else None,
            max_steps=config.max_steps,
            parallel=config.parallel_tool_calls,
            budget=budget,
            metadata=metadata,
        )
        update: dict[str, Any] = {}
        if config.messages:
            update[config.messages] = [*start, *result.messages]
        if config.output:
            update[config.output] = result.answer
        return update

    node.model = model  # type: ignore[attr-defined]  # for tests and introspection
    node.tools = tools  # type: ignore[attr-defined]
    node.prompt = system  # type: ignore[attr-defined]
    return node
