"""The `graphwright` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

GRAPHWRIGHT = str(Path(sys.executable).with_name("graphwright"))

FNS = '''
def split(state):
    return {"words": state["text"].split()}

def shout(state):
    return {"loud": [state["item"].upper()]}

def count(state):
    return {"n": len(state["loud"])}
'''

DEMO = """\
name: demo
state:
  text: {type: str}
  words: {type: "list[str]", default: []}
  item: {type: str}
  loud: {type: "list[str]", reducer: append}
  n: {type: int}
  summary: {type: str}
nodes:
  - {id: split, kind: python, with: {function: "fns.py:split"}}
  - {id: shout, kind: python, with: {function: "fns.py:shout", outputs: [loud]}}
  - {id: count, kind: python, with: {function: "fns.py:count"}}
  - {id: say, kind: template, with: {template: "{{ n }}: {{ loud|sort|join(' ') }}", output: summary}}
edges:
  - {from: START, to: split}
  - {from: split, map: {over: words, to: shout, as: item}}
  - {from: shout, to: count}
  - from: count
    when:
      - {if: "n > 2", to: say}
      - {else: true, to: END}
  - {from: say, to: END}
"""

REVIEW = """\
name: review
state:
  topic: {type: str}
  draft: {type: str}
  final: {type: str}
nodes:
  - {id: write, kind: template, with: {template: "about {{ topic }}", output: draft}}
  - {id: publish, kind: template, with: {template: "OK {{ draft }}", output: final}}
edges:
  - {from: START, to: write}
  - {from: write, to: publish}
  - {from: publish, to: END}
interrupt_before: [publish]
"""

BROKEN = """\
state:
  text: {type: str}
  out: {type: str}
nodes:
  - {id: a, kind: pyhton, with: {function: "fns.py:split"}}
  - {id: b, kind: template, with: {template: "{{ txet }}", output: out}}
  - {id: lonely, kind: template, with: {template: "x", output: out}}
edges:
  - {from: START, to: a}
  - {from: a, to: b}
  - from: b
    when: [{if: "out ==", to: END}, {else: true, to: nowhere}]
"""


def gw(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    full_env.pop("GRAPHWRIGHT_RUNS_DIR", None)
    full_env.pop("GRAPHWRIGHT_CHECKPOINT", None)
    return subprocess.run([GRAPHWRIGHT, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


def _files(tmp_path: Path) -> Path:
    (tmp_path / "fns.py").write_text(FNS)
    for name, text in (("demo.yaml", DEMO), ("review.yaml", REVIEW), ("broken.yaml", BROKEN)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_help() -> None:
    res = subprocess.run([GRAPHWRIGHT, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for command in ("run", "resume", "graph", "plugins", "runs", "demo"):
        assert command in res.stdout


def test_run_json_prints_only_the_state_and_writes_a_record(tmp_path: Path) -> None:
    d = _files(tmp_path)
    runs = d / "runs"
    res = gw("run", "demo.yaml", "-i", "text=a bb ccc", "--json", "--runs-dir", str(runs), cwd=d)
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert state["summary"] == "3: A BB CCC" and sorted(state["loud"]) == ["A", "BB", "CCC"]
    (record_path,) = runs.glob("*/record.json")
    assert str(record_path) in res.stderr  # where the record is, on stderr
    rec = json.loads(record_path.read_text())
    assert rec["spec_sha256"] == hashlib.sha256((d / "demo.yaml").read_bytes()).hexdigest()
    assert rec["inputs"] == {"text": "a bb ccc"} and rec["status"] == "completed"
    names = [n["node"] for n in rec["nodes"]]
    assert names.count("shout") == 3 and names[0] == "split" and names[-1] == "say"
    for n in rec["nodes"]:
        assert {"start", "end", "duration_s", "update"} <= set(n)
        assert n["end"] >= n["start"] and n["duration_s"] >= 0
    assert rec["nodes"][0]["update"] == {"words": ["a", "bb", "ccc"]}
    assert (runs / "checkpoints.sqlite").is_file()


def test_graph_check_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    d = _files(tmp_path)
    res = gw("graph", "check", "broken.yaml", cwd=d)
    assert res.returncode == 2
    err = res.stderr
    assert "broken.yaml:5 [nodes[0].kind]: unknown node kind 'pyhton'; did you mean 'python'?" in err
    assert "broken.yaml:6 [nodes[1].with]: node 'b' reads unknown channel 'txet'; did you mean 'text'?" in err
    assert "broken.yaml:7 [nodes[2]]: node 'lonely' is unreachable from START" in err
    assert "broken.yaml:12 [edges[2].when[0].if]: expression 'out ==' does not parse" in err
    assert "broken.yaml:12 [edges[2].when[1].to]: edge refers to unknown node 'nowhere'" in err
    assert "5 problem(s) found; nothing was run." in err
    ok = gw("graph", "check", "demo.yaml", cwd=d)
    assert ok.returncode == 0 and "ok" in ok.stdout
    # `run` refuses the same spec with the same exit code, before any node runs
    ran = gw("run", "broken.yaml", "--runs-dir", str(d / "runs"), cwd=d)
    assert ran.returncode == 2 and "unknown node kind 'pyhton'" in ran.stderr
    assert not (d / "runs").exists()


def test_graph_draw_mermaid(tmp_path: Path) -> None:
    d = _files(tmp_path)
    res = gw("graph", "draw", "demo.yaml", "--format", "mermaid", cwd=d)
    assert res.returncode == 0, res.stderr
    assert res.stdout.lstrip().startswith(("graph", "---", "%%"))
    for node in ("split", "shout", "count", "say", "__start__", "__end__"):
        assert node in res.stdout


def test_interrupt_resume_then_list_and_prune_threads(tmp_path: Path) -> None:
    d = _files(tmp_path)
    runs = str(d / "runs")
    first = gw("run", "review.yaml", "-i", "topic=owls", "--json", "--runs-dir", runs, cwd=d)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["draft"] == "about owls"
    assert "paused before publish" in first.stderr
    thread = first.stderr.split("graphwright resume ")[1].split("`")[0].strip()

    done = gw("resume", thread, "-i", "draft=edited", "--json", "--runs-dir", runs, cwd=d)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["final"] == "OK edited"

    other = gw("run", "demo.yaml", "-i", "text=x", "--thread", "second", "--json",
               "--runs-dir", runs, cwd=d)
    assert other.returncode == 0, other.stderr
    listed = json.loads(gw("runs", "list", "--json", "--runs-dir", runs, cwd=d).stdout)
    assert [t["thread_id"] for t in listed] == ["second", thread]  # newest first
    assert all(t["checkpoints"] > 0 and t["next"] == [] for t in listed)

    pruned = gw("runs", "prune", "--keep-last", "1", "--runs-dir", runs, cwd=d)
    assert pruned.returncode == 0, pruned.stderr
    result = json.loads(pruned.stdout)
    assert result["thread_ids"] == [thread] and result["threads_deleted"] == 1
    after = json.loads(gw("runs", "list", "--json", "--runs-dir", runs, cwd=d).stdout)
    assert [t["thread_id"] for t in after] == ["second"]
    bad = gw("runs", "prune", "--keep-last", "-1", "--runs-dir", runs, cwd=d)
    assert bad.returncode == 2 and "keep_last must be >= 0" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_plugins_list_survives_a_broken_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "gw_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gw-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[graphwright.plugins]\nbroken = gwtest_cli_broken\n")
    (site / "gwtest_cli_broken.py").write_text("import no_such_module_anywhere\n")
    res = gw("plugins", "list", "--json", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    (error,) = listing["errors"]
    assert "'broken'" in error and "gw-broken" in error and "no_such_module_anywhere" in error
    names = {c["name"] for c in listing["components"]}
    assert {"python", "template", "subgraph", "map", "word_count"} <= names
    table = gw("plugins", "list", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert table.returncode == 0 and "word_count" in table.stdout
    assert "warning:" in table.stderr and "gw-broken" in table.stderr


def test_input_values_follow_the_channel_type(tmp_path: Path) -> None:
    """`-i k=v`: text channels take v as given; others parse it as JSON (in-process: the
    parsing is the CLI's own, no need for another subprocess)."""
    from graphwright.cli import _parse_inputs
    from graphwright.graphs import parse_spec

    spec = parse_spec("""\
state:
  s: {type: str}
  maybe: {type: "str | None"}
  n: {type: int}
  xs: {type: "list[int]"}
  flag: {type: bool}
nodes: [{id: a, kind: python}]
""")
    (tmp_path / "in.json").write_text('{"n": 1, "s": "from file"}')
    values = _parse_inputs(["maybe=123", "n=42", "xs=[1, 2]", "flag=true", "s=[not json]"],
                           tmp_path / "in.json", spec)
    assert values == {"s": "[not json]", "maybe": "123", "n": 42, "xs": [1, 2], "flag": True}


def test_generate_streams_an_answer_from_the_int4_model(tmp_path: Path) -> None:
    env = {"GRAPHWRIGHT_CACHE": str(tmp_path / "cache")}  # a cold weight cache: the whole load path
    res = gw("generate", "What is the capital of France?", "--quantize", "int4", "--max-tokens", "12",
             cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout
    bad = gw("generate", "hi", "--quantize", "int5", cwd=tmp_path)
    assert bad.returncode == 2 and "--quantize 'int5': use none, int8 or int4" in bad.stderr
