"""Every agent node kind passes the node kind conformance suite."""

from __future__ import annotations

from typing import Any, ClassVar

from graphwright.plugins import Registry
from graphwright.testing.node_kind_suite import NodeKindConformance


class _Mine(NodeKindConformance):
    def make_registry(self) -> Registry:
        import graphwright._builtins as builtins

        return Registry.discover(entry_points=False, plugins=[builtins])


class TestLLM(_Mine):
    kind = "llm"
    config: ClassVar[dict[str, Any]] = {
        "model": {"provider": "scripted", "default": "Paris"},
        "prompt": "Capital of {{ country }}?", "inputs": ["country"], "output": "answer",
    }
    state: ClassVar[dict[str, Any]] = {"country": "France"}
    channels: ClassVar[dict[str, str]] = {"country": "str", "answer": "str"}


class TestAgent(_Mine):
    kind = "agent"
    config: ClassVar[dict[str, Any]] = {
        "model": {"provider": "scripted", "rules": [
            {"role": "human", "tool_calls": [{"name": "calculator", "args": {"expression": "6*7"}}]},
            {"role": "tool", "content": "42"}]},
        "tools": ["calculator"], "input": "question", "output": "answer",
    }
    state: ClassVar[dict[str, Any]] = {"question": "6*7?", "messages": []}
    channels: ClassVar[dict[str, str]] = {"question": "str", "messages": "messages", "answer": "str"}


class TestRouter(_Mine):
    kind = "router"
    config: ClassVar[dict[str, Any]] = {
        "choices": ["yes", "no"], "input": "q", "default": "no",
        "model": {"provider": "scripted", "default": "yes"},
    }
    state: ClassVar[dict[str, Any]] = {"q": "ok?"}
    channels: ClassVar[dict[str, str]] = {"q": "str", "route": "str"}


class TestPlanner(_Mine):
    kind = "planner"
    config: ClassVar[dict[str, Any]] = {
        "model": {"provider": "scripted", "rules": [
            {"match": "Make a short plan", "content": '{"steps": ["answer it"]}'},
            {"match": "Your step", "content": "done"},
            {"match": "final answer", "content": "all done"}]},
    }
    state: ClassVar[dict[str, Any]] = {"question": "task"}
    channels: ClassVar[dict[str, str]] = {"question": "str", "answer": "str", "plan": "dict"}


class TestToolNode(_Mine):
    kind = "tool"
    config: ClassVar[dict[str, Any]] = {
        "tool": "calculator", "inputs": {"expression": "expr"}, "output": "result",
    }
    state: ClassVar[dict[str, Any]] = {"expr": "2**5"}
    channels: ClassVar[dict[str, str]] = {"expr": "str", "result": "str"}


def test_every_agent_node_kind_has_a_conformance_class() -> None:
    from graphwright import agents

    tested = {c.kind for c in (TestLLM, TestAgent, TestRouter, TestPlanner, TestToolNode)}
    assert tested == {c.name for c in agents.components()}
