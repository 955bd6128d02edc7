"""`planner`: plan steps as structured output, execute each with a tool agent,
re-plan when a step fails, then write the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from graphwright.agents._common import build_model, build_tools, call_config, run_budget, text_of
from graphwright.agents._configs import PlannerConfig
from graphwright.agents._loop import react_loop
from graphwright.plugins import NodeContext

PLAN_PROMPT = """Make a short plan to answer the task below. Each step must be doable with
these tools: {tools}. Use at most {max_steps} steps.

Task: {task}"""

REPLAN_PROMPT = """Task: {task}

Done so far:
{done}

This step failed: {failed}
Reason: {reason}

Make a new plan for what remains (at most {max_steps} steps), avoiding what failed."""

EXECUTOR_SYSTEM = (
    "You carry out one step of a plan with the tools you have. Reply with the step's "
    "result. If the step cannot be done, reply with 'FAILED:' and the reason."
)

ANSWER_PROMPT = """Task: {task}

Results of the plan's steps:
{done}

Write the final answer to the task, briefly."""


class Plan(BaseModel):
    """A plan: the steps to take, in order."""

    steps: list[str] = Field(description="short imperative steps, in order")


class PlanFailed(Exception):
    pass


def planner_node(config: PlannerConfig, ctx: NodeContext) -> Callable[..., Any]:
    """Node kind factory of `planner`."""
    model = build_model(ctx, config.model)
    executor = build_model(ctx, config.executor_model) if config.executor_model else model
    tools = build_tools(ctx, config.tools)
    budget = run_budget(ctx, config.tool_budget)
    kwargs = {"method": config.structured_method} if config.structured_method else {}
    planner = model.with_structured_output(Plan, **kwargs)
    tool_names = ", ".join(tools) or "(none: reason only)"

    async def make_plan(prompt: str) -> list[str]:
        raw = await planner.ainvoke(
            [SystemMessage("You are a planner."), HumanMessage(prompt)], call_config()
        )
        plan = raw if isinstance(raw, Plan) else Plan.model_validate(raw)
        steps = [s.strip() for s in plan.steps if s.strip()][: config.max_plan_steps]
        if not steps:
            raise PlanFailed(f"planner {ctx.node_id!r} returned an empty plan")
        return steps

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        task = text_of(state.get(config.input))
        steps = await make_plan(
            PLAN_PROMPT.format(tools=tool_names, max_steps=config.max_plan_steps, task=task)
        )
        done: list[dict[str, Any]] = []
        replans = 0
        while steps:
            step = steps.pop(0)
            context = "\n".join(f"- {d['step']}: {d['result']}" for d in done if d["ok"])
            ask = f"Task: {task}\n" + (f"Earlier results:\n{context}\n" if context else "")
            ask += f"Your step: {step}"
            try:
                result = await react_loop(
                    executor,
                    [HumanMessage(ask)],
                    tools=tools,
                    system=EXECUTOR_SYSTEM,
                    max_steps=config.executor_max_steps,
                    budget=budget,
                )
                text, stopped = result.answer, result.stopped
                failed = stopped == "max_steps" or text.strip().upper().startswith("FAILED")
                reason = text if failed and stopped != "max_steps" else "ran out of steps"
            except Exception as exc:  # a provider error fails the step, not the run
                text, failed, reason = "", True, f"{type(exc).__name__}: {exc}"
            done.append({"step": step, "result": text, "ok": not failed})
            if not failed:
                continue
            if replans >= config.max_replans:
                raise PlanFailed(
                    f"planner {ctx.node_id!r}: step {step!r} failed ({reason}) and the "
                    f"re-plan budget ({config.max_replans}) is spent"
                )
            replans += 1
            steps = await make_plan(
                REPLAN_PROMPT.format(
                    task=task,
                    done=context or "(nothing)",
                    failed=step,
                    reason=reason,
                    max_steps=config.max_plan_steps,
                )
            )
        summary = "\n".join(f"- {d['step']}: {d['result']}" for d in done if d["ok"])
        reply = await model.ainvoke([HumanMessage(ANSWER_PROMPT.format(task=task, done=summary))],
                                    call_config())
        update: dict[str, Any] = {config.output: text_of(reply)}
        if config.plan_output:
            update[config.plan_output] = json.loads(json.dumps({"steps": done, "replans": replans}))
        return update

    node.model = model  # type: ignore[attr-defined]
    node.tools = tools  # type: ignore[attr-defined]
    return node
