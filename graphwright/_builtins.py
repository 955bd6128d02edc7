"""graphwright's own components, registered through the same hooks as any plugin.

Listed in pyproject under the entry-point group `graphwright.plugins`; nothing in
graphwright reaches its built-ins any other way.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphwright.plugins import Component, hookimpl


@hookimpl
def register_node_kinds() -> Sequence[Component]:
    from graphwright.graphs import nodes

    return nodes.components()
