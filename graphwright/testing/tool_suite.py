"""Conformance tests for tools. Subclass `ToolConformance`, override the `tool_case` fixture:

    class TestMyTool(ToolConformance):
        @pytest.fixture
        def tool_case(self) -> ToolUnderTest:
            return ToolUnderTest(registry, "my_tool", {}, valid_args={"x": 1},
                                 invalid_args={"x": "not a number"})

Every built-in tool passes these tests (tests/tools).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class ToolUnderTest:
    registry: Any  # graphwright.plugins.Registry
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    valid_args: dict[str, Any] = field(default_factory=dict)
    invalid_args: dict[str, Any] = field(default_factory=lambda: {"no_such_argument": 1})
    expected_in_output: str | None = None


class ToolConformance:
    """Behaviour every graphwright tool must have."""

    @pytest.fixture
    def tool_case(self) -> ToolUnderTest:
        raise NotImplementedError("override the `tool_case` fixture in your subclass")

    def build(self, case: ToolUnderTest) -> Any:
        return case.registry.build("tool", case.name, case.config)

    def test_is_a_tool_named_as_registered(self, tool_case: ToolUnderTest) -> None:
        from graphwright.tools import Tool

        tool = self.build(tool_case)
        assert isinstance(tool, Tool)
        assert tool.name == tool_case.name
        assert tool.description.strip()

    def test_parameters_are_an_object_schema(self, tool_case: ToolUnderTest) -> None:
        params = self.build(tool_case).parameters
        assert params["type"] == "object"
        assert isinstance(params.get("properties"), dict)
        for name in params.get("required", []):
            assert name in params["properties"]

    def test_openai_schema_binds_to_a_chat_model(self, tool_case: ToolUnderTest) -> None:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        from graphwright.providers import ScriptedChatModel

        schema = self.build(tool_case).openai_schema()
        assert convert_to_openai_tool(schema)["function"]["name"] == tool_case.name
        ScriptedChatModel().bind_tools([schema])

    def test_runs_with_valid_arguments(self, tool_case: ToolUnderTest) -> None:
        out = self.build(tool_case).run(tool_case.valid_args)
        assert isinstance(out, str)
        if tool_case.expected_in_output is not None:
            assert tool_case.expected_in_output in out

    def test_runs_async(self, tool_case: ToolUnderTest) -> None:
        out = asyncio.run(self.build(tool_case).arun(tool_case.valid_args))
        assert isinstance(out, str)

    def test_accepts_json_text_arguments(self, tool_case: ToolUnderTest) -> None:
        import json

        assert isinstance(self.build(tool_case).run(json.dumps(tool_case.valid_args)), str)

    def test_invalid_arguments_raise_a_tool_error(self, tool_case: ToolUnderTest) -> None:
        from graphwright.tools import ToolArgumentsError

        tool = self.build(tool_case)
        with pytest.raises(ToolArgumentsError, match=tool_case.name):
            tool.run(tool_case.invalid_args)
        with pytest.raises(ToolArgumentsError, match="not valid JSON"):
            tool.run("{not json")

    def test_bad_calls_become_error_messages(self, tool_case: ToolUnderTest) -> None:
        from graphwright.tools import execute_tool_call

        tool = self.build(tool_case)
        tools = {tool.name: tool}
        calls = [
            {"name": tool.name, "args": tool_case.invalid_args, "id": "a"},
            {"name": tool.name, "args": "{oops", "id": "b", "error": "bad JSON"},
            {"name": "no_such_tool", "args": {}, "id": "c"},
        ]
        for call in calls:
            outcome = asyncio.run(execute_tool_call(tools, call))
            assert outcome.error and outcome.content.startswith("Error:")
            assert outcome.call_id == call["id"]
