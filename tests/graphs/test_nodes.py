"""The built-in node kinds pass the same conformance suite a plugin author uses, and
each works as a plain function in a hand-written langgraph StateGraph."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphwright.graphs.nodes import (
    MapConfig,
    PythonConfig,
    TemplateConfig,
    import_function,
    map_node,
    python_node,
    template_node,
)
from graphwright.plugins import NodeContext, default_registry
from graphwright.testing.node_kind_suite import NodeKindConformance

FNS = '''
def inc(state):
    return {"n": state["n"] + 1}

def scaled(state, factor):
    return {"n": state["n"] * factor}

async def shout(state):
    return {"loud": state["item"].upper()}
'''

SUB = """
name: inner
state:
  x: {type: int}
  y: {type: int}
nodes:
  - {id: double, kind: python, with: {function: "fns.py:double", outputs: [y]}}
edges:
  - {from: START, to: double}
  - {from: double, to: END}
"""


class TestPythonConformance(NodeKindConformance):
    kind = "python"
    config: ClassVar[dict[str, Any]] = {"function": "fns.py:inc", "outputs": ["n"]}
    state: ClassVar[dict[str, Any]] = {"n": 1}
    channels: ClassVar[dict[str, str]] = {"n": "int"}

    @pytest.fixture(autouse=True)
    def _functions(self, tmp_path: Path) -> None:
        (tmp_path / "fns.py").write_text(FNS)


class TestTemplateConformance(NodeKindConformance):
    kind = "template"
    config: ClassVar[dict[str, Any]] = {"template": "hello {{ name }}", "output": "greeting"}
    state: ClassVar[dict[str, Any]] = {"name": "ada"}
    channels: ClassVar[dict[str, str]] = {"name": "str", "greeting": "str"}


class TestMapConformance(NodeKindConformance):
    kind = "map"
    config: ClassVar[dict[str, Any]] = {
        "over": "items",
        "as": "it",
        "node": {"kind": "template", "with": {"template": "<{{ it }}>", "output": "out"}},
        "collect": "out",
        "output": "results",
    }
    state: ClassVar[dict[str, Any]] = {"items": ["a", "b", "c"]}
    channels: ClassVar[dict[str, str]] = {"items": "list[str]", "results": "list[str]"}


class TestSubgraphConformance(NodeKindConformance):
    kind = "subgraph"
    config: ClassVar[dict[str, Any]] = {"spec": "inner.yaml", "inputs": {"x": "a"}, "outputs": {"b": "y"}}
    state: ClassVar[dict[str, Any]] = {"a": 21}
    channels: ClassVar[dict[str, str]] = {"a": "int", "b": "int"}

    @pytest.fixture(autouse=True)
    def _inner_spec(self, tmp_path: Path) -> None:
        (tmp_path / "inner.yaml").write_text(SUB)
        (tmp_path / "fns.py").write_text('def double(state):\n    return {"y": state["x"] * 2}\n')


def test_builtins_come_from_the_builtins_entry_point() -> None:
    reg = default_registry()
    for name in ("python", "template", "subgraph", "map"):
        entry = reg.get("node_kind", name)
        assert (entry.plugin, entry.distribution) == ("builtins", "graphwright")


def test_import_function_forms(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text(FNS)
    assert import_function("fns.py:inc", tmp_path)({"n": 1}) == {"n": 2}
    assert import_function("json:dumps")([1]) == "[1]"
    assert import_function("json.dumps")([2]) == "[2]"
    with pytest.raises(ValueError, match="no file"):
        import_function("nope.py:inc", tmp_path)
    with pytest.raises(ValueError, match="no callable 'missing'"):
        import_function("json:missing")
    with pytest.raises(ValueError, match="module:function"):
        import_function("justaname")


def test_python_node_passes_args(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text(FNS)
    ctx = NodeContext("s", default_registry(), tmp_path)
    fn = python_node(PythonConfig(function="fns.py:scaled", args={"factor": 3}), ctx)
    assert fn({"n": 2}) == {"n": 6}


def test_template_from_file_and_strict_undefined(tmp_path: Path) -> None:
    (tmp_path / "p.j2").write_text("Q: {{ question }}")
    ctx = NodeContext("t", default_registry(), tmp_path)
    render = template_node(TemplateConfig(file="p.j2", output="prompt"), ctx)
    assert render({"question": "why?"}) == {"prompt": "Q: why?"}
    with pytest.raises(Exception, match="question"):
        render({})  # a missing variable is an error, never an empty string


def test_template_is_sandboxed() -> None:
    render = template_node(TemplateConfig(template="{{ x.__class__.__mro__ }}", output="o"))
    with pytest.raises(Exception, match=r"unsafe|__class__|__mro__"):
        render({"x": "s"})


def test_template_reads_skip_jinja_globals_and_loop_vars() -> None:
    cfg = TemplateConfig(template="{% for i in range(n) %}{{ i }}{{ loop.index }}{% endfor %}",
                         output="o")
    assert cfg.reads() == ["n"]


def test_node_kinds_in_a_hand_written_state_graph(tmp_path: Path) -> None:
    """Every node kind is a plain function usable outside specs."""
    (tmp_path / "fns.py").write_text(FNS)
    ctx = NodeContext("m", default_registry(), tmp_path)

    class S(TypedDict, total=False):
        n: int
        words: list[str]
        louds: list[str]
        msg: str

    b = StateGraph(S)
    b.add_node("inc", python_node(PythonConfig(function="fns.py:inc"), ctx))
    b.add_node("loud", map_node(MapConfig.model_validate({
        "over": "words", "node": {"kind": "python", "with": {"function": "fns.py:shout"}},
        "collect": "loud", "output": "louds"}), ctx))
    b.add_node("say", template_node(TemplateConfig(template="{{ n }} {{ louds|join(',') }}",
                                                   output="msg")))
    b.add_edge(START, "inc")
    b.add_edge("inc", "loud")
    b.add_edge("loud", "say")
    b.add_edge("say", END)
    final = asyncio.run(b.compile().ainvoke({"n": 1, "words": ["x", "yz"]}))
    assert final["louds"] == ["X", "YZ"]
    assert final["msg"] == "2 X,YZ"
