"""The `tool` node kind: one tool call as a graph step."""

from __future__ import annotations

import asyncio

import pytest

from graphwright.graphs import compile_spec, parse_spec
from graphwright.plugins import Registry
from graphwright.tools import ToolError

SPEC = """
name: compute
state:
  expr: {type: str}
  result: {type: str, default: ""}
  problem: {type: str, default: ""}
nodes:
  - id: calc
    kind: tool
    with: {tool: calculator, inputs: {expression: expr}, output: result, error_output: problem}
edges: [{from: START, to: calc}, {from: calc, to: END}]
"""


def test_runs_a_tool_from_channels(registry: Registry) -> None:
    graph = compile_spec(parse_spec(SPEC), registry=registry)
    assert asyncio.run(graph.ainvoke({"expr": "6*7"}))["result"] == "42"
    failed = asyncio.run(graph.ainvoke({"expr": "1/0"}))
    assert failed["problem"] == "Error: division by zero" and "result" not in failed


def test_without_error_output_a_failure_fails_the_node(registry: Registry) -> None:
    graph = compile_spec(parse_spec(SPEC.replace(", error_output: problem", "")), registry=registry)
    with pytest.raises(ToolError, match="tool node 'calc' \\(calculator\\): division by zero"):
        asyncio.run(graph.ainvoke({"expr": "1/0"}))


def test_reads_are_checked_against_the_state(registry: Registry) -> None:
    from graphwright.graphs import SpecError

    with pytest.raises(SpecError, match="reads unknown channel 'nope'"):
        compile_spec(parse_spec(SPEC.replace("{expression: expr}", "{expression: nope}")),
                     registry=registry)
