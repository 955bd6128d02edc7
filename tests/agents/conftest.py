"""A registry holding this package's built-ins, through the plugin hooks (no entry points)."""

from __future__ import annotations

import pytest

from graphwright import agents, providers, tools
from graphwright.plugins import Registry, hookimpl


class _Builtins:
    @hookimpl
    def register_providers(self):  # type: ignore[no-untyped-def]
        return providers.components()

    @hookimpl
    def register_tools(self):  # type: ignore[no-untyped-def]
        return tools.components()

    @hookimpl
    def register_node_kinds(self):  # type: ignore[no-untyped-def]
        return agents.components()


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.discover(entry_points=False, plugins=[_Builtins()])
