"""The `router` node kind: rules first, then a model; the choice is validated."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from graphwright.agents import RouteError, RouterConfig, parse_choice, router_node
from graphwright.graphs import compile_spec
from graphwright.plugins import NodeContext, Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHOICES = {"math": "arithmetic", "chat": "small talk", "refuse": "not served"}


def make(registry: Registry, **with_: Any) -> Any:
    return router_node(RouterConfig.model_validate({"choices": CHOICES, **with_}),
                       NodeContext("triage", registry, None, {}))


def run(node: Any, state: dict[str, Any]) -> Any:
    return asyncio.run(node(state))


@pytest.mark.parametrize(
    ("question", "route", "answer"),
    [
        ("What is 12*12?", "math", "The result is 144."),
        ("what is a graph?", "chat", "Graphs are nodes joined by edges."),
        ("hack my neighbour's password", "refuse", "Sorry, I cannot help with that."),
    ],
)
def test_example_spec_routes(registry: Registry, question: str, route: str, answer: str) -> None:
    graph = compile_spec(EXAMPLES / "router_support.yaml", registry=registry)
    out = asyncio.run(graph.ainvoke({"question": question}))
    assert out["route"] == route and out["answer"] == answer


def test_rules_decide_without_a_model(registry: Registry) -> None:
    node = make(registry, rules=[{"channel": "n", "equals": 0, "to": "refuse"}], default="chat")
    assert run(node, {"n": 0}) == {"route": "refuse"}
    assert run(node, {"n": 5}) == {"route": "chat"}


def test_invalid_model_choice_is_asked_again(registry: Registry) -> None:
    node = make(registry, input="q",
                model={"provider": "scripted", "replies": ["banana", "I would say chat."]})
    assert run(node, {"q": "hello"}) == {"route": "chat"}
    second = node.model.calls[1].messages
    assert "That is not one of: math, chat, refuse" in second[-1].content


def test_default_after_the_attempts_or_a_clear_error(registry: Registry) -> None:
    node = make(registry, input="q", default="chat", attempts=2,
                model={"provider": "scripted", "default": "banana"})
    assert run(node, {"q": "x"}) == {"route": "chat"}
    assert len(node.model.calls) == 2
    strict = make(registry, input="q", model={"provider": "scripted", "default": "banana"})
    with pytest.raises(RouteError, match="named none of"):
        run(strict, {"q": "x"})


def test_goto_returns_a_command(registry: Registry) -> None:
    from langgraph.types import Command

    node = make(registry, goto=True, default="math")
    out = run(node, {})
    assert isinstance(out, Command) and out.goto == "math" and out.update == {"route": "math"}
    assert node.destinations == ("math", "chat", "refuse")


def test_choices_are_checked_when_the_spec_loads() -> None:
    with pytest.raises(ValueError, match="'nowhere' is not one of the choices"):
        RouterConfig.model_validate({"choices": ["a", "b"], "default": "nowhere"})
    with pytest.raises(ValueError, match="needs a `default`"):
        RouterConfig.model_validate({"choices": ["a", "b"]})


@pytest.mark.parametrize(
    ("text", "picked"),
    [("math", "math"), ("`chat`.", "chat"), ("I pick refuse, not chat", "refuse"),
     ("mathematics", None), ("MATH", "math"), ("", None)],
)
def test_parse_choice(text: str, picked: str | None) -> None:
    assert parse_choice(text, list(CHOICES)) == picked
