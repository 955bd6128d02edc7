"""Channels: types, reducers, defaults and checked writes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from graphwright.graphs import GraphSpec, StateWriteError
from graphwright.graphs._state import Channels
from graphwright.graphs._types import parse_type, reducer_for


def _channels(state: dict[str, Any]) -> Channels:
    issues: list = []
    spec = GraphSpec.model_validate({"state": state, "nodes": [{"id": "a", "kind": "python"}]})
    ch = Channels.from_spec(spec, issues)
    assert issues == []
    return ch


@pytest.mark.parametrize(("text", "ok", "bad"), [
    ("str", "x", 1),
    ("int", 3, "3"),
    ("int", 3, True),
    ("float", 1.5, "1.5"),
    ("bool", False, 0),
    ("list[str]", ["a"], ["a", 1]),
    ("dict[str, int]", {"a": 1}, {"a": "1"}),
    ("int | None", None, "x"),
    ("str | int", 4, 1.5),
    ("list[dict[str, float]]", [{"a": 1.0}], [{"a": "no"}]),
])
def test_types_checked_on_write(text: str, ok: Any, bad: Any) -> None:
    ch = _channels({"c": {"type": text}})
    assert ch.check_update("n1", {"c": ok}) == {"c": ok}
    with pytest.raises(StateWriteError) as info:
        ch.check_update("n1", {"c": bad})
    assert (info.value.node, info.value.channel) == ("n1", "c")
    assert "node 'n1' wrote channel 'c': expected" in str(info.value)


def test_unknown_type_and_reducer() -> None:
    with pytest.raises(ValueError, match="unknown type 'set'"):
        parse_type("set")
    with pytest.raises(ValueError, match="does not parse"):
        parse_type("list[")
    with pytest.raises(ValueError, match="unknown reducer 'sum'"):
        reducer_for("sum")


def test_reducers() -> None:
    assert reducer_for("replace") is None and reducer_for(None) is None
    append, merge, add = reducer_for("append"), reducer_for("merge"), reducer_for("add")
    assert append(None, "x") == ["x"] and append(["a"], ["b", "c"]) == ["a", "b", "c"]
    assert append(("a",), ("b",)) == ["a", "b"]
    assert merge({"a": 1, "b": 1}, {"b": 2}) == {"a": 1, "b": 2} and merge(None, None) == {}
    assert add(None, 2) == 2 and add(2, 3) == 5 and add("ab", "c") == "abc"
    msgs = reducer_for("messages")([HumanMessage("hi", id="1")], [AIMessage("yo", id="2")])
    assert [m.content for m in msgs] == ["hi", "yo"]


def test_append_channel_accepts_one_item_or_a_list() -> None:
    ch = _channels({"log": {"type": "list[str]", "reducer": "append"}})
    ch.check_update("n", {"log": "one"})
    ch.check_update("n", {"log": ["two", "three"]})
    with pytest.raises(StateWriteError, match="expected"):
        ch.check_update("n", {"log": 5})


def test_unknown_channel_names_node_and_channel() -> None:
    ch = _channels({"a": {"type": "int"}})
    with pytest.raises(StateWriteError) as info:
        ch.check_update("writer", {"b": 1})
    assert (info.value.node, info.value.channel) == ("writer", "b")
    assert "no such channel (channels: a)" in str(info.value)


def test_uncheckpointable_value_names_channel_and_node() -> None:
    ch = _channels({"thing": {"type": "any"}})
    with pytest.raises(StateWriteError) as info:
        ch.check_update("locker", {"thing": threading.Lock()})
    assert (info.value.node, info.value.channel) == ("locker", "thing")
    assert "cannot be checkpointed" in str(info.value)
    # plain data, nested, is fine
    ch.check_update("locker", {"thing": {"a": [1, 2.5, None, "x"]}})


def test_defaults_are_copied_not_shared() -> None:
    ch = _channels({"xs": {"type": "list[int]", "default": []}, "n": {"type": "int"}})
    view = ch.with_defaults({"n": 1})
    assert view == {"xs": [], "n": 1}
    view["xs"].append(9)
    assert ch.with_defaults({}) == {"xs": []}
    assert ch.with_defaults({"xs": [1]}) == {"xs": [1]}


def test_none_update_and_non_mapping_pass_through() -> None:
    ch = _channels({"a": {"type": "int"}})
    assert ch.check_update("n", None) == {}
    marker = ["not", "a", "mapping"]
    assert ch.check_update("n", marker) is marker


def test_state_schema_keys_and_reducers() -> None:
    ch = _channels({"a": {"type": "int"}, "log": {"type": "list[str]", "reducer": "append"}})
    schema = ch.state_schema("g")
    assert set(schema.__annotations__) == {"a", "log"}
    assert schema.__annotations__["log"].__metadata__[0] is reducer_for("append")
