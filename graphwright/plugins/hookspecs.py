"""Every extension point of graphwright, declared in one place (as pytest does).

A plugin is a module (or object) with functions decorated by `hookimpl` whose
names match the specs below. Built-in components register through these same
hooks, from `graphwright._builtins`, listed under the entry-point group
`graphwright.plugins` like any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from graphwright.plugins._component import Component

PROJECT = "graphwright"
ENTRY_POINT_GROUP = "graphwright.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class GraphwrightHookspecs:
    @hookspec
    def register_node_kinds(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Node kinds usable as `kind:` in a graph spec.

        `factory(config, ctx: NodeContext)` returns the node function
        `state -> partial update` (sync or async).
        """

    @hookspec
    def register_providers(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Model providers: `factory(config)` returns a langchain `BaseChatModel`."""

    @hookspec
    def register_tools(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Tools agents may call: `factory(config)` returns a `graphwright.tools.Tool`."""

    @hookspec
    def register_vector_stores(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Vector store backends: `factory(config)` returns a `VectorStore`."""

    @hookspec
    def register_embedders(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Embedders: `factory(config)` returns an object mapping texts to vectors."""

    @hookspec
    def register_metrics(self) -> Sequence[Component]:  # type: ignore[empty-body]
        """Eval metrics: `factory(config)` returns a `Metric`."""
