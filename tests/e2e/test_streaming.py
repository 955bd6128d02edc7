"""Model tokens stream to the terminal from a model called inside a nested subgraph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "graphwright"

INNER = """
name: inner
state:
  q: {type: str}
  a: {type: str}
nodes:
  - id: answer
    kind: llm
    with:
      model: {provider: scripted, replies: ["tokens from a nested graph"]}
      prompt: "Answer: {{ q }}"
      output: a
edges:
  - {from: START, to: answer}
  - {from: answer, to: END}
"""

OUTER = """
name: outer
state:
  question: {type: str}
  answer: {type: str}
nodes:
  - id: nested
    kind: subgraph
    with: {spec: inner.yaml, inputs: {q: question}, outputs: {answer: a}}
edges:
  - {from: START, to: nested}
  - {from: nested, to: END}
"""


def test_tokens_and_events_of_a_nested_graph_are_streamed(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text(INNER)
    (tmp_path / "outer.yaml").write_text(OUTER)
    proc = subprocess.run(
        [str(BIN), "run", "outer.yaml", "-i", "question=hi", "--runs-dir", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "▶ nested/answer" in lines  # the nested node's start, under its parent
    token_line = next(line for line in lines if line.startswith("nested/answer ›"))
    assert "tokens from a nested graph" in token_line
    assert '"answer": "tokens from a nested graph"' in proc.stdout
