"""Kill a 20-node run with SIGKILL several times, resume each time, and check that
every node's side effect happened and that no node whose step was checkpointed ran
again (execution is at-least-once: only the node running at a kill may repeat)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

N_NODES = 20
BIN = Path(sys.executable).parent / "graphwright"

EFFECTS = '''
import os, time, psycopg

def work(state, i):
    # the side effect first, then the slow part: a kill in between leaves an effect
    # whose step was never checkpointed, and that node runs again on resume
    with psycopg.connect(os.environ["EFFECTS_DB"], autocommit=True) as conn:
        conn.execute("INSERT INTO effects (node, pid) VALUES (%s, %s)", (i, os.getpid()))
    time.sleep(0.12)
    return {"done": [i]}
'''


def _spec(tmp: Path) -> Path:
    lines = ["name: chain20", "state:", '  done: {type: "list[int]", reducer: append, default: []}',
             "nodes:"]
    lines += [f"  - {{id: n{i}, kind: python, with: {{function: 'effects.py:work', "
              f"args: {{i: {i}}}, outputs: [done]}}}}" for i in range(N_NODES)]
    lines.append("edges:")
    lines += [f"  - {{from: {'START' if i == 0 else f'n{i - 1}'}, to: n{i}}}" for i in range(N_NODES)]
    lines.append(f"  - {{from: n{N_NODES - 1}, to: END}}")
    (tmp / "effects.py").write_text(EFFECTS)
    spec = tmp / "chain.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def _done_in_checkpoint(pg_url: str, thread: str) -> list[int]:
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(pg_url) as saver:
        tup = saver.get_tuple({"configurable": {"thread_id": thread}})
    if tup is None:
        return []
    return list(tup.checkpoint["channel_values"].get("done", []))


def _effects(pg_url: str) -> dict[int, int]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT node, count(*) FROM effects GROUP BY node").fetchall()
    return {int(n): int(c) for n, c in rows}


@pytest.mark.timeout(240)
def test_sigkill_and_resume_runs_every_node_once_after_its_checkpoint(
    tmp_path: Path, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (node int, pid int, at timestamptz DEFAULT now())")
    spec = _spec(tmp_path)
    env = {**os.environ, "EFFECTS_DB": pg_url}
    thread = "crashy"
    common = ["--checkpoint", pg_url, "--runs-dir", str(tmp_path / "runs")]
    rng = random.Random(7)
    kills = 0
    guards: list[tuple[list[int], dict[int, int]]] = []
    cmd = [str(BIN), "run", str(spec), "--thread", thread, "--json", *common]
    while True:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        if kills < 4:
            # wait until this attempt has made progress, then kill at a random moment
            before = sum(_effects(pg_url).values())
            deadline = time.monotonic() + 60
            while sum(_effects(pg_url).values()) == before and proc.poll() is None:
                assert time.monotonic() < deadline, "no progress within 60 s"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        if kills < 4 and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            checkpointed = _done_in_checkpoint(pg_url, thread)
            effects_then = _effects(pg_url)
            # what was checkpointed at this kill must never run again
            guards.append((checkpointed, effects_then))
            cmd = [str(BIN), "resume", thread, "--json", *common]
            continue
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        break

    assert kills >= 3, "the run finished before it could be killed three times"
    final = _effects(pg_url)
    assert sorted(final) == list(range(N_NODES)), "every node's side effect happened"
    for checkpointed, effects_then in guards:
        for node in checkpointed:
            assert final[node] == effects_then[node], (
                f"node n{node} was checkpointed before a kill but ran again after it"
            )
    repeats = sum(c - 1 for c in final.values())
    assert repeats <= kills, "only the node running at each kill may have run twice"
    assert _done_in_checkpoint(pg_url, thread) == list(range(N_NODES))

