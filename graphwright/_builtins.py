"""graphwright's own components, registered through the same hooks as any plugin.

Listed in pyproject under the entry-point group `graphwright.plugins`; nothing in
graphwright reaches its built-ins any other way. Each hook imports only config
models and factories: heavy libraries load when a component is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphwright.plugins import Component, hookimpl


@hookimpl
def register_node_kinds() -> Sequence[Component]:
    from graphwright import agents
    from graphwright.graphs import nodes

    return [*nodes.components(), *agents.components()]


@hookimpl
def register_providers() -> Sequence[Component]:
    from graphwright import providers

    return providers.components()


@hookimpl
def register_tools() -> Sequence[Component]:
    from graphwright import tools

    return tools.components()
