"""The tool-calling (ReAct) loop shared by the `agent` and `planner` node kinds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage

from graphwright.agents._common import call_config, text_of
from graphwright.tools import Tool, ToolBudget, ToolError, ToolOutcome, execute_tool_call


@dataclass
class LoopResult:
    messages: list[BaseMessage]  # new messages only (AI + tool), in order
    answer: str
    steps: int  # model calls made
    tool_calls: int
    tool_errors: int
    stopped: str  # "answer" | "max_steps"
    outcomes: list[ToolOutcome] = field(default_factory=list)


async def _run_tool(
    tools: Mapping[str, Tool], call: Mapping[str, Any], budget: ToolBudget | None
) -> ToolOutcome:
    """One tool call, reported to the callbacks (so the run record counts it)."""
    config = call_config()
    manager = None
    if config is not None and config.get("callbacks") is not None:
        from langchain_core.callbacks import AsyncCallbackManager

        manager = AsyncCallbackManager.configure(
            inheritable_callbacks=config.get("callbacks"),
            inheritable_metadata=config.get("metadata"),
            inheritable_tags=config.get("tags"),
        )
    name = str(call.get("name") or "")
    run = None
    if manager is not None:
        args = call.get("args")
        text = args if isinstance(args, str) else json.dumps(args, default=str)
        run = await manager.on_tool_start({"name": name}, text, name=name)
    outcome = await execute_tool_call(tools, call, budget=budget)
    if run is not None:
        if outcome.error:
            await run.on_tool_error(ToolError(outcome.content.removeprefix("Error: ")))
        else:
            await run.on_tool_end(outcome.content)
    return outcome


async def react_loop(
    model: Any,
    conversation: Sequence[BaseMessage],
    *,
    tools: Mapping[str, Tool],
    system: str | None = None,
    max_steps: int = 8,
    parallel: bool = True,
    budget: ToolBudget | None = None,
    metadata: dict[str, Any] | None = None,
) -> LoopResult:
    """Call the model, run the tools it asks for, feed results back, until it answers.

    Several tool calls in one reply run concurrently when `parallel`. Bad tool
    calls come back to the model as error tool messages it can correct.
    """
    bound = model.bind_tools([t.openai_schema() for t in tools.values()]) if tools else model
    prefix: list[BaseMessage] = [SystemMessage(system)] if system else []
    new: list[BaseMessage] = []
    outcomes: list[ToolOutcome] = []
    steps = 0
    while steps < max_steps:
        steps += 1
        reply = await bound.ainvoke([*prefix, *conversation, *new], call_config(metadata))
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=text_of(reply))
        new.append(reply)
        calls: list[Mapping[str, Any]] = [*reply.tool_calls, *reply.invalid_tool_calls]
        if not calls:
            return LoopResult(new, text_of(reply), steps, len(outcomes),
                              sum(o.error for o in outcomes), "answer", outcomes)
        if parallel and len(calls) > 1:
            done = await asyncio.gather(*(_run_tool(tools, c, budget) for c in calls))
        else:
            done = [await _run_tool(tools, c, budget) for c in calls]
        for outcome in done:
            outcomes.append(outcome)
            new.append(
                ToolMessage(
                    content=outcome.content,
                    tool_call_id=outcome.call_id,
                    name=outcome.name,
                    status="error" if outcome.error else "success",
                )
            )
    last_text = next((text_of(m) for m in reversed(new) if isinstance(m, AIMessage) and text_of(m)), "")
    return LoopResult(new, last_text, steps, len(outcomes),
                      sum(o.error for o in outcomes), "max_steps", outcomes)
