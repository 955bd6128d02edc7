"""GraphSpec models and loading: YAML/JSON, line numbers, key paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphwright.graphs import EdgeSpec, GraphSpec, SpecError, load_spec, parse_spec

GOOD = """\
name: tiny
state:
  text: {type: str}
  out: {type: str}
nodes:
  - id: t
    kind: template
    with:
      template: "{{ text }}!"
      output: out
edges:
  - {from: START, to: t}
  - {from: t, to: END}
"""


def _issues(text: str, path: Path) -> list:
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value.issues


def test_yaml_and_json_give_the_same_spec(tmp_path: Path) -> None:
    y = tmp_path / "g.yaml"
    y.write_text(GOOD)
    spec = load_spec(y)
    j = tmp_path / "g.json"
    j.write_text(json.dumps(spec.model_dump(mode="json", by_alias=True)))
    again = load_spec(j)
    assert again.model_dump() == spec.model_dump()
    assert spec.source_path == y.resolve() and spec.base_dir == tmp_path.resolve()
    assert spec.node("t").with_ == {"template": "{{ text }}!", "output": "out"}
    assert spec.sha256 != again.sha256  # hash of the file's own text
    assert len(spec.sha256) == 64


def test_line_numbers_of_keys(tmp_path: Path) -> None:
    spec = parse_spec(GOOD, tmp_path / "g.yaml")
    assert spec.source_lines["nodes[0].with.output"] == 10
    assert spec.source_lines["edges[1]"] == 13
    issue = spec.issue("boom", ("nodes", 0, "with", "nonexistent"))
    assert (issue.line, issue.key) == (8, "nodes[0].with.nonexistent")  # nearest known line


def test_yaml_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    (issue,) = _issues("name: x\nnodes:\n  - {id: a, kind: python\n  - {id: b}\n", tmp_path / "s.yaml")
    assert "YAML syntax error" in issue.message
    assert issue.file.endswith("s.yaml") and issue.line == 4
    assert str(issue).startswith(f"{issue.file}:4")


def test_not_a_mapping(tmp_path: Path) -> None:
    (issue,) = _issues("- just\n- a list\n", tmp_path / "l.yaml")
    assert "mapping" in issue.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "absent.yaml")


def test_every_model_error_at_once_with_lines(tmp_path: Path) -> None:
    text = """\
name: bad
state:
  x: {type: int, reducer: sum}
nodes:
  - {id: a, kind: python}
  - {id: "9bad", kind: python}
edges:
  - {from: a}
  - from: a
    to: b
    when: [{if: "x > 1", to: a}]
  - from: a
    when: [{if: "x", else: true, to: a}]
max_steps: 0
extra_key: 1
"""
    issues = _issues(text, tmp_path / "bad.yaml")
    by_key = {i.key: i for i in issues}
    assert by_key["state.x.reducer"].line == 3
    assert by_key["nodes[1].id"].line == 6
    assert "exactly one of to/when/map, got none" in by_key["edges[0]"].message
    assert by_key["edges[0]"].line == 8
    assert "got ['to', 'when']" in by_key["edges[1]"].message and by_key["edges[1]"].line == 9
    assert "either `if" in by_key["edges[2].when[0]"].message
    assert by_key["max_steps"].line == 14
    assert by_key["extra_key"].line == 15 and "Extra inputs" in by_key["extra_key"].message
    assert all(i.file.endswith("bad.yaml") for i in issues)


def test_edge_helpers() -> None:
    e = EdgeSpec.model_validate({"from": ["a", "b"], "to": "c"})
    assert (e.sources(), e.targets()) == (["a", "b"], ["c"])
    w = EdgeSpec.model_validate({"from": "a", "when": [{"if": "x", "to": "b"},
                                                       {"else": True, "to": "END"}]})
    assert w.targets() == ["b", "END"]
    m = EdgeSpec.model_validate({"from": "a", "map": {"over": "xs", "to": "b"}})
    assert m.targets() == ["b"] and m.map is not None and m.map.as_ == "item"


def test_messages_channel_gets_its_reducer() -> None:
    spec = GraphSpec.model_validate({"state": {"m": {"type": "messages"}},
                                     "nodes": [{"id": "a", "kind": "python"}]})
    assert spec.state["m"].reducer == "messages"
