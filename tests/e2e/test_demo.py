"""`graphwright demo` — what `make demo` runs — works end to end from the repository, the
local model included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "graphwright"


def test_demo_runs_the_triage_graph_and_writes_a_record(tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN), "demo", "--runs-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Escalated: paged on-call about 2 ticket(s)" in proc.stderr
    # the nested subgraph's node shows up in the stream under its parent
    assert "escalate/page_oncall" in proc.stderr
    records = sorted((json.loads(p.read_text()) for p in tmp_path.glob("*/record.json")),
                     key=lambda r: r["started_at"])
    assert [r["graph"] for r in records] == ["triage", "assistant", "assistant"]
    assert all(r["status"] == "completed" for r in records)
    assert [n["node"] for n in records[0]["nodes"]].count("classify") == 4
    # the local model answered both questions; the arithmetic went through the calculator
    math, chat = records[1], records[2]
    assert math["state"]["route"] == "math" and chat["state"]["route"] == "chat"
    assert any(m["type"] == "tool" and m["content"] == "391" for m in math["state"]["messages"])
    assert math["model_calls"] and all(c["provider"] == "local" for c in math["model_calls"])
    assert chat["state"]["answer"].strip()
