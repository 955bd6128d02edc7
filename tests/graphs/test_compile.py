"""check(): every spec problem at once, before any node runs; compile_spec/load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import graphwright
from graphwright.graphs import SpecError, check, compile_spec, load, load_spec

# a side-effect file proves no node ran
FNS = """
from pathlib import Path

def touch(state):
    Path(__file__).with_name("RAN").write_text("ran")
    return {}

def both(state):
    return {"x": 1}
"""

ALL_PROBLEMS = """\
name: broken
state:
  text: {type: str}
  out: {type: str}
  n: {type: int}
nodes:
  - {id: first, kind: python, with: {function: "fns.py:touch"}}
  - {id: typo, kind: templat, with: {template: "x", output: out}}
  - {id: reader, kind: template, with: {template: "{{ txt }}", output: out}}
  - {id: writer, kind: template, with: {template: "x", output: nowhere}}
  - {id: noconf, kind: template, with: {template: "x"}}
  - {id: wrongtype, kind: python, with: {function: 12, outputs: [out]}}
  - {id: island, kind: template, with: {template: "x", output: out}}
edges:
  - {from: START, to: first}
  - {from: first, to: reader}
  - from: reader
    when:
      - {if: "n >", to: writer}
      - {if: "count > 2", to: noconf}
      - {else: true, to: wrongtype}
  - {from: writer, to: ghost}
  - {from: noconf, to: END}
  - {from: wrongtype, to: typo}
  - {from: typo, to: END}
"""


def _write(tmp_path: Path, text: str, name: str = "g.yaml") -> Path:
    (tmp_path / "fns.py").write_text(FNS)
    p = tmp_path / name
    p.write_text(text)
    return p


def test_check_reports_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, ALL_PROBLEMS)
    issues, _ = check(load_spec(path))
    found = {(i.key, i.line): i.message for i in issues}
    assert all(i.file.endswith("g.yaml") for i in issues)

    def one(key: str, line: int, *words: str) -> None:
        msg = found.get((key, line))
        assert msg is not None, f"no issue at {key} line {line}; got {sorted(found)}"
        for w in words:
            assert w in msg, (w, msg)

    one("nodes[1].kind", 8, "unknown node kind 'templat'", "did you mean 'template'?")
    one("nodes[2].with", 9, "reads unknown channel 'txt'", "did you mean 'text'?")
    one("nodes[3].with", 10, "writes unknown channel 'nowhere'")
    one("nodes[4].with.output", 11, "Field required", "'template'")
    one("nodes[5].with.function", 12, "valid string", "'python'")
    one("edges[2].when[0].if", 19, "does not parse")
    one("edges[2].when[1].if", 20, "unknown channel 'count'")
    one("edges[3].to", 22, "unknown node 'ghost'")
    one("nodes[6]", 13, "'island' is unreachable from START")
    assert len(issues) == 9
    assert not (tmp_path / "RAN").exists()


def test_compile_raises_every_problem_before_any_node_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, ALL_PROBLEMS)
    with pytest.raises(SpecError) as info:
        load(path)
    assert len(info.value.issues) == 9
    assert "g.yaml:8 [nodes[1].kind]" in str(info.value)
    assert not (tmp_path / "RAN").exists()


def _spec(tmp_path: Path, body: str) -> list:
    path = _write(tmp_path, body)
    issues, _ = check(load_spec(path))
    return issues


def test_static_fan_in_without_reducer_names_channel_and_writers(tmp_path: Path) -> None:
    issues = _spec(tmp_path, """\
state:
  out: {type: str}
  log: {type: "list[str]", reducer: append}
nodes:
  - {id: a, kind: template, with: {template: "a", output: out}}
  - {id: b, kind: template, with: {template: "b", output: out}}
  - {id: c, kind: template, with: {template: "c", output: log}}
  - {id: d, kind: template, with: {template: "d", output: log}}
edges:
  - {from: START, to: [a, b, c, d]}
  - {from: [a, b, c, d], to: END}
""")
    (issue,) = issues  # `log` has a reducer: fine
    assert "channel 'out'" in issue.message and "nodes a, b" in issue.message
    assert "no reducer" in issue.message
    assert (issue.key, issue.line) == ("edges[0]", 10)


def test_fan_in_from_separate_edges_of_one_source(tmp_path: Path) -> None:
    issues = _spec(tmp_path, """\
state:
  out: {type: str}
nodes:
  - {id: a, kind: python, with: {function: "fns.py:both", outputs: [out]}}
  - {id: b, kind: python, with: {function: "fns.py:both"}}
  - {id: c, kind: template, with: {template: "c", output: out}}
edges:
  - {from: START, to: a}
  - {from: a, to: b}
  - {from: a, to: c}
  - {from: b, to: END}
  - {from: c, to: END}
""")
    assert issues == []  # b declares no writes: only c writes `out` after a
    (issue,) = _spec(tmp_path, """\
state:
  out: {type: str}
nodes:
  - {id: b, kind: python, with: {function: "fns.py:both", outputs: [out]}}
  - {id: c, kind: template, with: {template: "c", output: out}}
edges:
  - {from: START, to: b}
  - {from: START, to: c}
  - {from: b, to: END}
  - {from: c, to: END}
""")
    assert "channel 'out'" in issue.message and "nodes b, c" in issue.message


def test_conditional_targets_never_run_together(tmp_path: Path) -> None:
    issues = _spec(tmp_path, """\
state:
  out: {type: str}
  go: {type: bool}
nodes:
  - {id: a, kind: template, with: {template: "a", output: out}}
  - {id: b, kind: template, with: {template: "b", output: out}}
edges:
  - from: START
    when: [{if: go, to: a}, {else: true, to: b}]
  - {from: a, to: END}
  - {from: b, to: END}
""")
    assert issues == []


def test_map_fan_out_target_writing_a_plain_channel(tmp_path: Path) -> None:
    body = """\
state:
  words: {type: "list[str]"}
  item: {type: str}
  out: {type: %s}
nodes:
  - {id: each, kind: template, with: {template: "{{ item }}", output: out}}
edges:
  - {from: START, map: {over: words, to: each, as: item}}
  - {from: each, to: END}
"""
    (issue,) = _spec(tmp_path, body % "str")
    assert "channel 'out'" in issue.message and "parallel copies of node 'each'" in issue.message
    assert "fan-out over 'words'" in issue.message
    assert (issue.key, issue.line) == ("edges[0].map", 8)
    assert _spec(tmp_path, body % '"list[str]", reducer: append') == []


def test_map_over_and_as_must_be_channels(tmp_path: Path) -> None:
    issues = _spec(tmp_path, """\
state:
  out: {type: "list[str]", reducer: append}
nodes:
  - {id: each, kind: template, with: {template: "x", output: out}}
edges:
  - {from: START, map: {over: wrds, to: each, as: it}}
  - {from: each, to: END}
""")
    keys = sorted(i.key for i in issues)
    assert keys == ["edges[0].map.as", "edges[0].map.over"]


def test_state_and_interrupt_problems(tmp_path: Path) -> None:
    issues = _spec(tmp_path, """\
state:
  a: {type: "list[strr]"}
nodes:
  - {id: a1, kind: template, with: {template: "x", output: a}}
  - {id: a1, kind: template, with: {template: "x", output: a}}
  - {id: END, kind: template, with: {template: "x", output: a}}
edges:
  - {from: START, to: a1}
  - {from: a1, to: END}
interrupt_before: [a2]
""")
    msgs = {i.key: i.message for i in issues}
    assert "unknown type 'list[strr]'" in msgs["state.a.type"]
    assert "duplicate node id 'a1'" in msgs["nodes[1].id"]
    assert "'END' is reserved" in msgs["nodes[2].id"]
    assert "unknown node 'a2'" in msgs["interrupt_before[0]"]


def test_graphwright_load_and_draw(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
name: pair
state:
  text: {type: str}
  out: {type: str}
nodes:
  - {id: shout, kind: template, with: {template: "{{ text|upper }}", output: out}}
edges:
  - {from: START, to: shout}
  - {from: shout, to: END}
""")
    graph = graphwright.load(path)
    assert asyncio.run(graph.ainvoke({"text": "hi"})) == {"text": "hi", "out": "HI"}
    mermaid = graph.get_graph().draw_mermaid()
    assert "shout" in mermaid and "__start__" in mermaid
    # compile_spec takes a path or a spec as well
    assert compile_spec(path).invoke({"text": "a"})["out"] == "A"
    assert compile_spec(load_spec(path)).graphwright_spec.name == "pair"


def test_subgraph_cycle_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("""\
state: {x: {type: int}}
nodes: [{id: inner, kind: subgraph, with: {spec: b.yaml}}]
edges: [{from: START, to: inner}, {from: inner, to: END}]
""")
    (tmp_path / "b.yaml").write_text("""\
state: {x: {type: int}}
nodes: [{id: back, kind: subgraph, with: {spec: a.yaml}}]
edges: [{from: START, to: back}, {from: back, to: END}]
""")
    with pytest.raises(SpecError, match=r"subgraph cycle: a\.yaml -> b\.yaml -> a\.yaml"):
        load(tmp_path / "a.yaml")


def test_check_opens_subgraph_specs(tmp_path: Path) -> None:
    # Everything wrong across both files at once, before any node is built: the subgraph's own
    # problem (in its file, with its line), a channel mapped that it does not have, a missing file.
    (tmp_path / "sub.yaml").write_text("""\
state: {words: {type: "list[str]"}, n: {type: int}}
nodes: [{id: count, kind: template, with: {template: "x", output: n}}]
edges: [{from: START, to: count}, {from: count, to: nowhere}]
""")
    parent = _write(tmp_path, """\
state: {text: {type: str}, n: {type: int}}
nodes:
  - {id: inner, kind: subgraph, with: {spec: sub.yaml, inputs: {word: text}, outputs: {n: n}}}
  - {id: gone, kind: subgraph, with: {spec: missing.yaml}}
edges: [{from: START, to: inner}, {from: inner, to: gone}, {from: gone, to: END}]
""")
    issues, _ = check(load_spec(parent))
    found = {(Path(i.file).name, i.key): (i.message, i.line) for i in issues}
    message, line = found[("sub.yaml", "edges[1].to")]
    assert "unknown node 'nowhere'" in message and line == 3
    message, _ = found[("g.yaml", "nodes[0].with.inputs.word")]
    assert "has no channel 'word'" in message and "did you mean 'words'?" in message
    message, _ = found[("g.yaml", "nodes[1].with.spec")]
    assert message.startswith("subgraph spec not found") and "missing.yaml" in message
    assert len(issues) == 3
    with pytest.raises(SpecError):
        compile_spec(parent)


def test_a_node_that_cannot_be_built_is_a_spec_error(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
state: {x: {type: int}}
nodes: [{id: p, kind: python, with: {function: "fns.py:nope"}}]
edges: [{from: START, to: p}, {from: p, to: END}]
""")
    with pytest.raises(SpecError) as info:
        load(path)
    (issue,) = info.value.issues
    assert issue.key == "nodes[0].with" and issue.line == 2 and "no callable 'nope'" in issue.message


def test_map_inner_node_kind_and_config_are_checked(tmp_path: Path) -> None:
    body = """\
state:
  words: {type: "list[str]"}
  out: {type: "list[str]"}
nodes:
  - id: tag
    kind: map
    with:
      over: words
      node:
        kind: %s
        with: {template: "x", %s: o}
      collect: o
      output: out
edges:
  - {from: START, to: tag}
  - {from: tag, to: END}
"""
    (issue,) = _spec(tmp_path, body % ("templte", "output"))
    assert (issue.key, issue.line) == ("nodes[0].with.node.kind", 10)
    assert "did you mean 'template'?" in issue.message
    issues = _spec(tmp_path, body % ("template", "outptu"))
    assert {(i.key, i.line) for i in issues} == {("nodes[0].with.node.with.output", 11),
                                                 ("nodes[0].with.node.with.outptu", 11)}
    assert _spec(tmp_path, body % ("template", "output")) == []
