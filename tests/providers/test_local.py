"""The `local` provider — the in-process engine with SmolLM2-135M — passes the provider
conformance suite on the real model, and drives an agent graph with a real tool."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from graphwright.graphs._run import run_spec
from graphwright.plugins import Registry
from graphwright.testing.provider_suite import ProviderConformance, ProviderUnderTest

# short answers keep the real model's share of the suite to a few seconds
LOCAL = {"model": "smollm2", "max_tokens": 48}


class TestLocalProvider(ProviderConformance):
    @pytest.fixture
    def provider(self, registry: Registry) -> ProviderUnderTest:
        return ProviderUnderTest(registry, "local", dict(LOCAL))


AGENT_SPEC = """
name: local_calculator
state:
  question: {type: str}
  messages: {type: messages}
  answer: {type: str, default: ""}
nodes:
  - id: solve
    kind: agent
    with:
      model: {provider: local, max_tokens: 48}
      system: "Use the calculator tool for arithmetic."
      tools: [calculator]
      input: question
      messages: messages
      output: answer
      max_steps: 4
edges:
  - {from: START, to: solve}
  - {from: solve, to: END}
"""


def test_agent_on_the_local_model_calls_a_real_tool(registry: Registry, tmp_path: Path) -> None:
    spec = tmp_path / "agent.yaml"
    spec.write_text(AGENT_SPEC)
    result = asyncio.run(run_spec(spec, {"question": "What is 17*23?"}, runs_dir=tmp_path / "runs",
                                  registry=registry))
    assert result.status == "completed"
    kinds = [type(m).__name__ for m in result.state["messages"]]
    # human -> a grammar-constrained calculator call -> the tool's result -> a text answer
    assert kinds[:4] == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"], kinds
    call = result.state["messages"][1].tool_calls[0]
    assert call["name"] == "calculator" and set(call["args"]) == {"expression"}
    assert result.state["messages"][2].content == "391"  # the model copied 17*23 into the call
    assert result.state["answer"].strip()
    record = json.loads(result.record_path.read_text())  # type: ignore[union-attr]
    assert record["status"] == "completed"
