"""Every built-in tool passes the tool conformance suite."""

from __future__ import annotations

import pytest

from graphwright.plugins import Registry
from graphwright.testing.tool_suite import ToolConformance, ToolUnderTest


class TestCalculator(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry) -> ToolUnderTest:
        return ToolUnderTest(registry, "calculator", {}, {"expression": "17*23"},
                             {"expression": 17}, expected_in_output="391")


class TestPython(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry) -> ToolUnderTest:
        return ToolUnderTest(registry, "python", {"timeout_s": 5}, {"code": "print(6*7)"},
                             {"source": "print(1)"}, expected_in_output="42")


class TestHttpGet(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry, base: str) -> ToolUnderTest:
        return ToolUnderTest(registry, "http_get",
                             {"allow_hosts": ["127.0.0.1"], "allow_private": True},
                             {"url": f"{base}/hello"}, {"url": ["not", "a", "string"]},
                             expected_in_output="ok /hello")


def test_every_builtin_tool_has_a_conformance_class(registry: Registry) -> None:
    # a new built-in tool fails here until it is run through the suite above
    assert set(registry.names("tool")) == {"calculator", "python", "http_get"}
