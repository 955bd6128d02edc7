"""The `agent` node kind: a ReAct loop driven by the scripted provider."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graphwright.agents import AgentConfig, agent_node
from graphwright.graphs import compile_spec, parse_spec
from graphwright.plugins import NodeContext, Registry
from graphwright.providers import UsageRecorder
from graphwright.tools import tool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make(registry: Registry, options: dict[str, Any] | None = None, **with_: Any) -> Any:
    config = AgentConfig.model_validate(with_)
    return agent_node(config, NodeContext("solve", registry, EXAMPLES, options or {}))


def run(node: Any, state: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(node(state))


def test_example_spec_recovers_from_a_tool_error(registry: Registry) -> None:
    graph = compile_spec(EXAMPLES / "agent_calculator.yaml", registry=registry)
    rec = UsageRecorder()
    out = asyncio.run(graph.ainvoke({"question": "What is 17*23?"}, {"callbacks": [rec]}))
    assert out["answer"] == "17 * 23 = 391"
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage", "ToolMessage", "AIMessage"]
    error, result = out["messages"][2], out["messages"][4]
    assert error.status == "error" and "expression: Field required" in error.content
    assert result.status == "success" and result.content == "391"
    # the conversation the model saw on its second call included the error
    usage = rec.to_dict()
    assert usage["per_node"]["solve"]["calls"] == 3
    assert usage["per_node"]["solve"]["tool_calls"] == 2
    assert usage["per_node"]["solve"]["tool_errors"] == 1


def test_malformed_json_and_unknown_tools_are_corrected(registry: Registry) -> None:
    node = make(
        registry,
        model={"provider": "scripted", "replies": [
            {"tool_calls": [{"name": "calculator", "args": "{expression: 2+2"}]},
            {"tool_calls": [{"name": "python", "args": {"code": "print(4)"}}]},
            {"tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}}]},
            "It is 4.",
        ]},
        tools=["calculator"],
        input="question",
        output="answer",
    )
    out = run(node, {"question": "2+2?", "messages": []})
    tool_msgs = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert "not valid JSON" in tool_msgs[0].content
    # `python` is registered, but not on this agent's allow-list
    assert "unknown tool 'python'; available tools: calculator" in tool_msgs[1].content
    assert tool_msgs[2].content == "4" and out["answer"] == "It is 4."
    # every tool message answers the call it belongs to
    ai_ids = [c["id"] for m in out["messages"] if isinstance(m, AIMessage)
              for c in [*m.tool_calls, *m.invalid_tool_calls]]
    assert [m.tool_call_id for m in tool_msgs] == ai_ids


def test_parallel_tool_calls_run_concurrently(registry: Registry) -> None:
    started: dict[str, asyncio.Event] = {}

    def waiter(name: str, other: str) -> Any:
        @tool(name=name, description=f"waits for {other}")
        async def fn(x: int) -> int:
            started.setdefault(name, asyncio.Event()).set()
            await asyncio.wait_for(started.setdefault(other, asyncio.Event()).wait(), 10)
            return x * 2

        return fn

    node = make(
        registry,
        model={"provider": "scripted", "replies": [
            {"tool_calls": [{"name": "left", "args": {"x": 1}}, {"name": "right", "args": {"x": 2}}]},
            "done",
        ]},
        tools=[waiter("left", "right"), waiter("right", "left")],
        output="answer",
        messages="messages",
        input="question",
    )
    out = run(node, {"question": "go"})
    tool_msgs = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    # each waited for the other: only possible if both ran at once
    assert [m.content for m in tool_msgs] == ["2", "4"] and out["answer"] == "done"


def test_a_raising_tool_becomes_an_error_message(registry: Registry) -> None:
    @tool
    def flaky(n: int) -> str:
        """Breaks."""
        raise OSError("disk on fire")

    node = make(registry, tools=[flaky], input="q", output="a", messages=None, model={
        "provider": "scripted",
        "replies": [{"tool_calls": [{"name": "flaky", "args": {"n": 1}}]}, "gave up politely"],
    })
    out = run(node, {"q": "try"})
    assert out == {"a": "gave up politely"}
    seen = node.model.calls[1].messages
    assert "raised OSError: disk on fire" in seen[-1].content


def test_max_steps_stops_an_endless_loop(registry: Registry) -> None:
    node = make(registry, tools=["calculator"], input="q", output="a", max_steps=3, model={
        "provider": "scripted",
        "rules": [{"content": "thinking",
                   "tool_calls": [{"name": "calculator", "args": {"expression": "1"}}]}],
    })
    out = run(node, {"q": "loop", "messages": []})
    assert len(node.model.calls) == 3 and out["a"] == "thinking"


def test_conversation_is_kept_in_the_messages_channel(registry: Registry) -> None:
    node = make(registry, input="q", output="a", model={"provider": "scripted", "replies": ["one", "two"]})
    first = run(node, {"q": "hi", "messages": []})
    history = first["messages"]
    second = run(node, {"q": "again", "messages": history})
    assert second["a"] == "two"
    sent = node.model.calls[1].messages
    assert [m.content for m in sent if isinstance(m, HumanMessage | AIMessage)] == ["hi", "one", "again"]


def test_system_prompt_is_a_template_over_the_state(registry: Registry) -> None:
    node = make(registry, input="q", output="a", system="You help {{ user }}.",
                model={"provider": "scripted", "default": "ok"})
    run(node, {"q": "hi", "user": "Ada", "messages": []})
    assert node.model.calls[0].messages[0].content == "You help Ada."


def test_run_wide_tool_budget_is_shared_by_all_agents(registry: Registry) -> None:
    spec = parse_spec("""
name: budget
state:
  q: {type: str}
  messages: {type: messages}
  a: {type: str, default: ""}
  b: {type: str, default: ""}
nodes:
  - id: first
    kind: agent
    with:
      model:
        provider: scripted
        rules:
          - {role: human, tool_calls: [{name: calculator, args: {expression: "1+1"}}]}
          - {role: tool, content: "first done"}
      tools: [calculator]
      input: q
      output: a
  - id: second
    kind: agent
    with:
      model:
        provider: scripted
        rules:
          - {role: ai, tool_calls: [{name: calculator, args: {expression: "2+2"}}]}
          - {role: tool, content: "second done"}
      tools: [calculator]
      messages: messages
      output: b
edges:
  - {from: START, to: first}
  - {from: first, to: second}
  - {from: second, to: END}
""")
    graph = compile_spec(spec, registry=registry, options={"tool_budget": 1})
    out = asyncio.run(graph.ainvoke({"q": "go"}))
    results = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    assert results[0] == "2"
    assert "budget of 1 tool call(s) is spent" in results[1]


def test_config_declares_its_channels() -> None:
    cfg = AgentConfig.model_validate({"model": "scripted", "input": "question", "output": "answer"})
    assert cfg.reads() == ["question", "messages"] and cfg.writes() == ["messages", "answer"]


def test_spec_errors_point_at_the_node(registry: Registry) -> None:
    from graphwright.graphs import SpecError

    spec = parse_spec("""
name: bad
state: {q: {type: str}, messages: {type: messages}}
nodes:
  - {id: solve, kind: agent, with: {model: {provider: scripted}, max_steps: 0}}
edges: [{from: START, to: solve}, {from: solve, to: END}]
""")
    with pytest.raises(SpecError, match=r"max_steps.*greater than or equal to 1"):
        compile_spec(spec, registry=registry)
