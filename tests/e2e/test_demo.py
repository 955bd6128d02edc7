"""`graphwright demo` — what `make demo` runs — works end to end from the repository."""

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
    records = list(tmp_path.glob("*/record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "completed"
    assert [n["node"] for n in record["nodes"]].count("classify") == 4
