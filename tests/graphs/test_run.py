"""Running specs end to end in-process: loops, branches, fan-out/join, subgraphs, map,
interrupts and resume, failures that keep the checkpoint, and the run record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from graphwright.graphs import GraphRunError, SpecError, StateWriteError
from graphwright.graphs._run import StepLimitError, resume_thread, run_spec

FNS = '''
import threading
from pathlib import Path

def inc(state):
    return {"n": state["n"] + 1}

def split(state):
    return {"words": state["text"].split()}

def shout(state):
    return {"loud": [state["item"].upper()]}

def count(state):
    return {"total": len(state["loud"])}

def lock(state):
    return {"thing": threading.Lock()}

def wrong_type(state):
    return {"n": "seven"}

def left(state):
    return {"log": ["left"]}

def right(state):
    return {"log": ["right"]}

def join(state):
    return {"joined": "+".join(sorted(state["log"]))}

def flaky(state):
    # "fixed" once the flag file exists; records each call to prove what re-ran
    here = Path(__file__).parent
    with open(here / "calls.txt", "a") as f:
        f.write("flaky\\n")
    if not (here / "FIXED").exists():
        raise ValueError("flag file missing")
    return {"n": state["n"] * 10}

def before(state):
    here = Path(__file__).parent
    with open(here / "calls.txt", "a") as f:
        f.write("before\\n")
    return {"n": state["n"] + 1}
'''


def _setup(tmp_path: Path, spec: str, name: str = "g.yaml") -> Path:
    (tmp_path / "fns.py").write_text(FNS)
    path = tmp_path / name
    path.write_text(spec)
    return path


def _run(path: Path, inputs: dict[str, Any] | None, tmp_path: Path, **kw: Any) -> Any:
    return asyncio.run(run_spec(path, inputs, runs_dir=tmp_path / "runs", **kw))


LOOP = """\
state:
  n: {type: int, default: 0}
nodes:
  - {id: step, kind: python, with: {function: "fns.py:inc"}}
edges:
  - {from: START, to: step}
  - from: step
    when:
      - {if: "n >= 3", to: END}
      - {else: true, to: step}
max_steps: 10
"""


def test_loop_with_a_when_exit(tmp_path: Path) -> None:
    res = _run(_setup(tmp_path, LOOP), {}, tmp_path)
    assert res.status == "completed" and res.state["n"] == 3


def test_loop_without_exit_is_stopped_by_max_steps(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP.replace('if: "n >= 3"', 'if: "n < 0"'))
    with pytest.raises(GraphRunError) as info:
        _run(path, {}, tmp_path)
    assert info.value.node == "step"
    assert isinstance(info.value.exc, StepLimitError)
    assert "max_steps=10" in str(info.value)
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "failed" and "max_steps=10" in record["error"]
    assert 1 <= record["state"]["n"] <= 10


def test_conditional_edges_pick_one_branch(tmp_path: Path) -> None:
    spec = """\
state:
  score: {type: float}
  verdict: {type: str}
nodes:
  - {id: judge, kind: template, with: {template: "scored {{ score }}", output: verdict}}
  - {id: good, kind: template, with: {template: "good", output: verdict}}
  - {id: bad, kind: template, with: {template: "bad", output: verdict}}
edges:
  - {from: START, to: judge}
  - from: judge
    when:
      - {if: "score >= 0.5", to: good}
      - {else: true, to: bad}
  - {from: good, to: END}
  - {from: bad, to: END}
"""
    path = _setup(tmp_path, spec)
    assert _run(path, {"score": 0.9}, tmp_path).state["verdict"] == "good"
    assert _run(path, {"score": 0.1}, tmp_path).state["verdict"] == "bad"


def test_when_condition_that_fails_at_run_time_names_the_condition(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP.replace("default: 0", "default: 0}\n  m: {type: int")
                  .replace('"n >= 3"', '"m > 3"'))
    with pytest.raises(GraphRunError) as info:
        _run(path, {}, tmp_path)
    assert info.value.node == "step"
    assert "`when: m > 3`" in str(info.value) and "NoneType" in str(info.value)


def test_parallel_fan_out_over_a_list_and_join(tmp_path: Path) -> None:
    spec = """\
state:
  text: {type: str}
  words: {type: "list[str]", default: []}
  item: {type: str}
  loud: {type: "list[str]", reducer: append}
  total: {type: int}
nodes:
  - {id: split, kind: python, with: {function: "fns.py:split"}}
  - {id: shout, kind: python, with: {function: "fns.py:shout", outputs: [loud]}}
  - {id: count, kind: python, with: {function: "fns.py:count"}}
edges:
  - {from: START, to: split}
  - {from: split, map: {over: words, to: shout, as: item}}
  - {from: shout, to: count}
  - {from: count, to: END}
"""
    events: list[tuple[str, tuple[str, ...], str]] = []
    res = _run(_setup(tmp_path, spec), {"text": "a bb ccc dddd"}, tmp_path,
               on_event=lambda kind, ns, node, payload: events.append((kind, ns, node)))
    assert sorted(res.state["loud"]) == ["A", "BB", "CCC", "DDDD"]
    assert res.state["total"] == 4  # the join ran once, after all four copies
    assert [e for e in events if e[0] == "start"].count(("start", (), "shout")) == 4
    assert [e for e in events if e[0] == "start"].count(("start", (), "count")) == 1


def test_static_parallel_branches_and_join(tmp_path: Path) -> None:
    spec = """\
state:
  log: {type: "list[str]", reducer: append}
  joined: {type: str}
nodes:
  - {id: l, kind: python, with: {function: "fns.py:left", outputs: [log]}}
  - {id: r, kind: python, with: {function: "fns.py:right", outputs: [log]}}
  - {id: j, kind: python, with: {function: "fns.py:join"}}
edges:
  - {from: START, to: [l, r]}
  - {from: [l, r], to: j}
  - {from: j, to: END}
"""
    res = _run(_setup(tmp_path, spec), {}, tmp_path)
    assert res.state["joined"] == "left+right"


def test_subgraph_runs_a_nested_spec_and_streams_its_events(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.yaml").write_text("""\
name: inner
state:
  words: {type: "list[str]"}
  item: {type: str}
  loud: {type: "list[str]", reducer: append}
  summary: {type: str}
nodes:
  - {id: shout, kind: python, with: {function: "../fns.py:shout", outputs: [loud]}}
  - {id: say, kind: template, with: {template: "{{ loud|sort|join('-') }}", output: summary}}
edges:
  - {from: START, map: {over: words, to: shout, as: item}}
  - {from: shout, to: say}
  - {from: say, to: END}
""")
    spec = """\
state:
  text: {type: str}
  words: {type: "list[str]"}
  result: {type: str}
nodes:
  - {id: split, kind: python, with: {function: "fns.py:split"}}
  - id: nested
    kind: subgraph
    with: {spec: sub/inner.yaml, inputs: {words: words}, outputs: {result: summary}}
edges:
  - {from: START, to: split}
  - {from: split, to: nested}
  - {from: nested, to: END}
"""
    events: list[tuple[str, tuple[str, ...], str]] = []
    res = _run(_setup(tmp_path, spec), {"text": "x yy"}, tmp_path,
               on_event=lambda kind, ns, node, payload: events.append((kind, ns, node)))
    assert res.state["result"] == "X-YY"
    nested = [(k, node) for k, ns, node in events if ns and ns[0].startswith("nested:")]
    assert ("start", "shout") in nested and ("update", "say") in nested
    record = json.loads(res.record_path.read_text())
    inner_nodes = [n for n in record["nodes"] if n["namespace"].startswith("nested:")]
    assert {n["node"] for n in inner_nodes} == {"shout", "say"}


def test_map_node_collects_in_order(tmp_path: Path) -> None:
    spec = """\
state:
  words: {type: "list[str]"}
  tagged: {type: "list[str]"}
nodes:
  - id: tag
    kind: map
    with:
      over: words
      as: w
      node: {kind: template, with: {template: "<{{ w }}>", output: out}}
      collect: out
      output: tagged
      concurrency: 2
edges:
  - {from: START, to: tag}
  - {from: tag, to: END}
"""
    res = _run(_setup(tmp_path, spec), {"words": ["c", "a", "b"]}, tmp_path)
    assert res.state["tagged"] == ["<c>", "<a>", "<b>"]


REVIEW = """\
state:
  draft: {type: str}
  final: {type: str}
nodes:
  - {id: write, kind: template, with: {template: "draft: {{ topic }}", output: draft}}
  - {id: publish, kind: template, with: {template: "PUBLISHED {{ draft }}", output: final}}
edges:
  - {from: START, to: write}
  - {from: write, to: publish}
  - {from: publish, to: END}
interrupt_before: [publish]
"""


def test_interrupt_before_and_resume_with_a_reviewers_edit(tmp_path: Path) -> None:
    path = _setup(tmp_path, REVIEW.replace("  draft: {type: str}",
                                           "  topic: {type: str}\n  draft: {type: str}"))
    first = _run(path, {"topic": "owls"}, tmp_path)
    assert first.status == "interrupted" and first.next_nodes == ["publish"]
    assert first.state["draft"] == "draft: owls" and "final" not in first.state
    done = asyncio.run(resume_thread(first.thread_id, updates={"draft": "edited by a human"},
                                     runs_dir=tmp_path / "runs"))
    assert done.status == "completed" and done.thread_id == first.thread_id
    assert done.state["final"] == "PUBLISHED edited by a human"
    with pytest.raises(SpecError, match="expected str"):  # a reviewer's edit is type-checked
        asyncio.run(resume_thread(first.thread_id, updates={"draft": 5},
                                  runs_dir=tmp_path / "runs"))


def test_failing_node_keeps_the_checkpoint_and_resumes_after_a_fix(tmp_path: Path) -> None:
    spec = """\
state:
  n: {type: int}
nodes:
  - {id: before, kind: python, with: {function: "fns.py:before"}}
  - {id: flaky, kind: python, with: {function: "fns.py:flaky"}}
edges:
  - {from: START, to: before}
  - {from: before, to: flaky}
  - {from: flaky, to: END}
"""
    path = _setup(tmp_path, spec)
    with pytest.raises(GraphRunError) as info:
        _run(path, {"n": 1}, tmp_path, thread_id="t-fix")
    err = info.value
    assert err.node == "flaky" and isinstance(err.exc, ValueError)
    assert "flag file missing" in str(err) and "graphwright resume t-fix" in str(err)
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "failed" and record["next"] == ["flaky"]
    assert record["state"] == {"n": 2}  # `before` is checkpointed
    assert any(n["node"] == "flaky" and "ValueError" in n["error"] for n in record["nodes"])

    (tmp_path / "FIXED").write_text("")  # the fix
    done = asyncio.run(resume_thread("t-fix", runs_dir=tmp_path / "runs"))
    assert done.status == "completed" and done.state["n"] == 20
    calls = (tmp_path / "calls.txt").read_text().split()
    assert calls == ["before", "flaky", "flaky"]  # `before` never ran twice


def test_wrong_type_write_stops_the_run_naming_node_and_channel(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP)
    (tmp_path / "g.yaml").write_text(LOOP.replace("fns.py:inc", "fns.py:wrong_type"))
    with pytest.raises(GraphRunError) as info:
        _run(path, {}, tmp_path)
    assert info.value.node == "step"
    assert isinstance(info.value.exc, StateWriteError) and info.value.exc.channel == "n"
    assert "expected int, got str 'seven'" in str(info.value)


def test_uncheckpointable_value_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    path = _setup(tmp_path, """\
state:
  thing: {type: any}
nodes:
  - {id: grab, kind: python, with: {function: "fns.py:lock"}}
edges:
  - {from: START, to: grab}
  - {from: grab, to: END}
""")
    with pytest.raises(GraphRunError) as info:
        _run(path, {}, tmp_path)
    assert isinstance(info.value.exc, StateWriteError)
    assert (info.value.node, info.value.exc.node, info.value.exc.channel) == ("grab", "grab", "thing")
    assert "cannot be checkpointed" in str(info.value)


def test_inputs_are_type_checked_before_anything_runs(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP)
    with pytest.raises(SpecError) as info:
        _run(path, {"n": "three", "nope": 1}, tmp_path)
    keys = sorted(i.key for i in info.value.issues)
    assert keys == ["inputs.n", "inputs.nope"]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/record.json"))


def test_run_record_contents(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP)
    res = _run(path, {"n": 1}, tmp_path, thread_id="rec")
    rec = json.loads(res.record_path.read_text())
    assert res.record_path == tmp_path / "runs" / res.run_id / "record.json"
    import hashlib

    assert rec["spec_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["spec_path"] == str(path.resolve())
    assert (rec["thread_id"], rec["inputs"], rec["status"]) == ("rec", {"n": 1}, "completed")
    assert [n["node"] for n in rec["nodes"]] == ["step", "step"]
    assert [n["update"] for n in rec["nodes"]] == [{"n": 2}, {"n": 3}]
    for n in rec["nodes"]:
        assert n["start"] <= n["end"] and n["duration_s"] >= 0
    assert rec["state"] == {"n": 3}


def test_map_over_a_subgraph_node_kind(tmp_path: Path) -> None:
    """An inner node kind that returns a Runnable (subgraph, map) works inside `map`."""
    (tmp_path / "inner.yaml").write_text("""\
state:
  w: {type: str}
  shouted: {type: str}
nodes:
  - {id: up, kind: template, with: {template: "{{ w|upper }}!", output: shouted}}
edges: [{from: START, to: up}, {from: up, to: END}]
""")
    spec = """\
state:
  words: {type: "list[str]"}
  out: {type: "list[str]"}
nodes:
  - id: each
    kind: map
    with:
      over: words
      as: word
      node: {kind: subgraph, with: {spec: inner.yaml, inputs: {w: word}, outputs: {res: shouted}}}
      collect: res
      output: out
edges: [{from: START, to: each}, {from: each, to: END}]
"""
    res = _run(_setup(tmp_path, spec), {"words": ["a", "b"]}, tmp_path)
    assert res.state["out"] == ["A!", "B!"]
    import graphwright

    sync = graphwright.load(tmp_path / "g.yaml").invoke({"words": ["c"]})
    assert sync["out"] == ["C!"]


def test_spec_error_at_build_time_leaves_no_running_record(tmp_path: Path) -> None:
    path = _setup(tmp_path, LOOP.replace("fns.py:inc", "fns.py:no_such_function"))
    with pytest.raises(SpecError, match="no callable 'no_such_function'"):
        _run(path, {}, tmp_path)
    assert list((tmp_path / "runs").glob("*/record.json")) == []
