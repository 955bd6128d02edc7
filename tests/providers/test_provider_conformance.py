"""Every built-in provider passes the provider conformance suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from graphwright.plugins import Registry
from graphwright.testing.provider_suite import (
    OpenAIStubServer,
    ProviderConformance,
    ProviderUnderTest,
)

SCRIPT = {
    "rules": [
        {"match": "weather", "role": "human",
         "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]},
        {"match": "JSON person", "content": '{"name": "Ada", "age": 36}'},
    ],
    "default": "hello there, friend",
}


class TestScriptedProvider(ProviderConformance):
    @pytest.fixture
    def provider(self, registry: Registry) -> ProviderUnderTest:
        return ProviderUnderTest(registry, "scripted", SCRIPT)


@pytest.fixture(scope="module")
def stub_server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


class TestOpenAIProvider(ProviderConformance):
    """The real langchain-openai + openai client against a loopback server."""

    @pytest.fixture
    def provider(self, registry: Registry, stub_server: OpenAIStubServer) -> ProviderUnderTest:
        return ProviderUnderTest(
            registry, "openai", {"base_url": stub_server.url, "api_key": "sk-test", "model": "stub"}
        )


def test_every_builtin_provider_has_a_conformance_class(registry: Registry) -> None:
    # `local` runs the suite on the real model in tests/providers/test_local.py; a new built-in
    # provider fails here until it is run through the suite too
    assert set(registry.names("provider")) == {"scripted", "openai", "local"}
