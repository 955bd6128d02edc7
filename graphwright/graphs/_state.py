"""State channels at run time: the langgraph schema, defaults, and checked writes."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from pydantic import TypeAdapter, ValidationError

from graphwright.graphs._errors import SpecIssue, StateWriteError
from graphwright.graphs._spec import GraphSpec
from graphwright.graphs._types import parse_type, reducer_for


@dataclass
class Channels:
    types: dict[str, Any] = field(default_factory=dict)
    reducers: dict[str, Any] = field(default_factory=dict)
    reducer_names: dict[str, str | None] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)
    _items: dict[str, TypeAdapter[Any]] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: GraphSpec, issues: list[SpecIssue]) -> Channels:
        ch = cls()
        for name, c in spec.state.items():
            try:
                ch.types[name] = parse_type(c.type)
            except ValueError as exc:
                issues.append(spec.issue(str(exc), ("state", name, "type")))
                ch.types[name] = Any
            ch.reducer_names[name] = c.reducer
            ch.reducers[name] = reducer_for(c.reducer)
            if c.default is not None:
                ch.defaults[name] = c.default
        return ch

    def state_schema(self, name: str) -> type:
        # langgraph needs the keys and reducers; we check types ourselves on write. A
        # reduced channel still gets its container type, since langgraph starts it from
        # `type()`; with Any it would take the first write as the whole value.
        fields = {
            ch: (Annotated[_base(self.types[ch], self.reducer_names[ch]), red]
                 if red is not None else Any)
            for ch, red in self.reducers.items()
        }
        return TypedDict(f"{name}_state", fields, total=False)  # type: ignore[operator]

    def with_defaults(self, state: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in self.defaults if k not in state]
        if not missing:
            return state if isinstance(state, dict) else dict(state)
        # deep-copied so a node that mutates a default list does not change the spec's
        return {**{k: copy.deepcopy(self.defaults[k]) for k in missing}, **state}

    # -- checked writes ------------------------------------------------------
    def check_update(self, node: str, update: Any) -> Any:
        if update is None:
            return {}
        if not isinstance(update, Mapping):
            return update  # Command / Send lists go straight to langgraph
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        serde = _SERDE.setdefault("serde", JsonPlusSerializer())
        for key, value in update.items():
            if key not in self.types:
                known = ", ".join(sorted(self.types)) or "none declared"
                raise StateWriteError(node, key, f"no such channel (channels: {known})")
            self._check_type(node, key, value)
            if _plain(value, 2):
                continue  # JSON-like values always checkpoint; skip the serializer's cost
            try:
                serde.dumps_typed(value)
            except Exception as exc:
                raise StateWriteError(
                    node, key, f"value of type {type(value).__name__} cannot be checkpointed ({exc})"
                ) from None
        return update

    def _check_type(self, node: str, key: str, value: Any) -> None:
        tp = self.types[key]
        if tp is Any or self.reducer_names.get(key) == "messages":
            return
        if key not in self._adapters:
            self._adapters[key] = TypeAdapter(tp)
            args = getattr(tp, "__args__", None)
            if getattr(tp, "__origin__", None) is list and args:
                self._items[key] = TypeAdapter(args[0])
        adapter = self._adapters[key]
        if self.reducer_names.get(key) == "append" and not isinstance(value, list | tuple):
            adapter = self._items.get(key, TypeAdapter(Any))
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StateWriteError(
                node, key, f"expected {_type_name(tp)}, got {type(value).__name__} "
                f"{_short(value)} ({first['msg']})"
            ) from None

    def wrap(self, node: str, fn: Any) -> Any:
        """The node as langgraph runs it: defaults filled in, writes checked.

        A node kind returns a plain function (sync or async) or, when it has both a
        sync and an async way to run, a langchain `Runnable` (e.g. `RunnableLambda(f,
        afunc=g)`), so the graph works under both `invoke` and `ainvoke`.
        """
        from langchain_core.runnables import Runnable, RunnableLambda

        if isinstance(fn, Runnable):
            runnable = fn

            def run_sync(state: dict[str, Any]) -> Any:
                return self.check_update(node, runnable.invoke(self.with_defaults(state)))

            async def run_both(state: dict[str, Any]) -> Any:
                return self.check_update(node, await runnable.ainvoke(self.with_defaults(state)))

            return RunnableLambda(run_sync, afunc=run_both, name=node)
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        ):
            async def run_async(state: dict[str, Any]) -> Any:
                return self.check_update(node, await fn(self.with_defaults(state)))

            run_async.__name__ = node
            return run_async

        def run(state: dict[str, Any]) -> Any:
            return self.check_update(node, fn(self.with_defaults(state)))

        run.__name__ = node
        return run


_SERDE: dict[str, Any] = {}
_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any, depth: int) -> bool:
    """A small JSON-like value (scalars, and short lists/dicts of them, `depth` levels deep)."""
    if type(value) in _SCALARS:
        return True
    if depth == 0:
        return False
    if type(value) in (list, tuple):
        return len(value) <= 32 and all(_plain(v, depth - 1) for v in value)
    if type(value) is dict:
        return len(value) <= 32 and all(
            type(k) is str and _plain(v, depth - 1) for k, v in value.items()
        )
    return False


def _base(tp: Any, reducer: str | None) -> Any:
    if reducer in ("append", "messages"):
        return list
    if reducer == "merge":
        return dict
    origin = getattr(tp, "__origin__", None) or tp
    return origin if origin in (int, float, str, list, dict) else Any


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if not getattr(tp, "__args__", None) else str(tp)  # type: ignore[return-value]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
