"""Conformance suite for node kinds, for plugin authors (as langchain-tests does).

Subclass it in your plugin's tests and fill in the class attributes:

    from graphwright.testing.node_kind_suite import NodeKindConformance

    class TestShout(NodeKindConformance):
        kind = "shout"
        config = {"input": "text", "output": "loud"}
        state = {"text": "hi"}
        channels = {"text": "str", "loud": "str"}

Each test checks one promise a node kind makes to the graph runtime.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from graphwright.plugins import NodeContext, Registry, default_registry


class NodeKindConformance:
    kind: ClassVar[str]
    config: ClassVar[dict[str, Any]]
    state: ClassVar[dict[str, Any]]
    channels: ClassVar[dict[str, str]]  # channel -> type string, for the one-node spec

    def make_registry(self) -> Registry:
        """Override to test against a hand-built registry instead of the installed plugins."""
        return default_registry()

    # -- helpers -------------------------------------------------------------
    @pytest.fixture
    def registry(self) -> Registry:
        return self.make_registry()

    def _build(self, registry: Registry, tmp_path: Any) -> Any:
        ctx = NodeContext(node_id="under_test", registry=registry, base_dir=tmp_path, options={})
        return registry.build("node_kind", self.kind, self.config, ctx=ctx)

    @staticmethod
    def _call(fn: Any, state: dict[str, Any]) -> Any:
        from langchain_core.runnables import Runnable

        if isinstance(fn, Runnable):  # a kind with both a sync and an async way to run
            return asyncio.run(fn.ainvoke(state))
        out = fn(state)
        if inspect.isawaitable(out):
            out = asyncio.run(_await(out))
        return out

    # -- the contract --------------------------------------------------------
    def test_registered_with_config_model(self, registry: Registry) -> None:
        comp = registry.get("node_kind", self.kind).component
        assert comp.config is not None and issubclass(comp.config, BaseModel), (
            "a node kind needs a pydantic config model so specs are validated before running"
        )
        assert comp.description, "give the node kind a one-line description"

    def test_config_rejects_unknown_fields(self, registry: Registry) -> None:
        comp = registry.get("node_kind", self.kind).component
        assert comp.config is not None
        with pytest.raises(ValidationError):
            comp.config.model_validate({**self.config, "no_such_field_xyz": 1})

    def test_returns_partial_update(self, registry: Registry, tmp_path: Any) -> None:
        update = self._call(self._build(registry, tmp_path), dict(self.state))
        assert isinstance(update, Mapping), f"a node returns a dict update, got {type(update)}"
        assert set(update) <= set(self.channels), (
            f"update keys {sorted(update)} must be declared channels {sorted(self.channels)}"
        )

    def test_declared_writes_cover_update(self, registry: Registry, tmp_path: Any) -> None:
        comp = registry.get("node_kind", self.kind).component
        assert comp.config is not None
        cfg = comp.config.model_validate(self.config)
        writes = getattr(cfg, "writes", None)
        if writes is None:
            pytest.fail("config model should declare `writes()` so fan-in conflicts are caught "
                        "at compile time")
        update = self._call(self._build(registry, tmp_path), dict(self.state))
        assert set(update) <= set(writes()), f"wrote {sorted(update)}, declared {writes()}"

    def test_does_not_mutate_input_state(self, registry: Registry, tmp_path: Any) -> None:
        import copy

        state = copy.deepcopy(self.state)
        self._call(self._build(registry, tmp_path), state)
        assert state == self.state, "nodes must return updates, not mutate the state they get"

    def test_update_is_checkpointable(self, registry: Registry, tmp_path: Any) -> None:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        update = self._call(self._build(registry, tmp_path), dict(self.state))
        serde = JsonPlusSerializer()
        for key, value in update.items():
            assert serde.loads_typed(serde.dumps_typed(value)) == value, key

    def test_runs_in_a_compiled_spec(self, registry: Registry, tmp_path: Any) -> None:
        from graphwright.graphs import GraphSpec, compile_spec

        spec = GraphSpec.model_validate({
            "name": "conformance",
            "state": {k: {"type": t} for k, t in self.channels.items()},
            "nodes": [{"id": "under_test", "kind": self.kind, "with": self.config}],
            "edges": [{"from": "START", "to": "under_test"}, {"from": "under_test", "to": "END"}],
        })
        spec.source_path = tmp_path / "conformance.yaml"
        graph = compile_spec(spec, registry=registry)
        final = asyncio.run(graph.ainvoke(dict(self.state)))
        assert isinstance(final, dict)


async def _await(aw: Any) -> Any:
    return await aw
