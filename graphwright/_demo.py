"""`graphwright demo`: the main job on the embedded defaults, from a fresh clone.

It grows as capabilities land. Now: the triage graph (parallel fan-out, a
conditional edge, a nested subgraph, templates), checkpointed to SQLite, with
its run record written under the runs directory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_demo(runs_dir: Path) -> int:
    from graphwright.graphs._run import run_spec

    console = Console(stderr=True)
    spec = EXAMPLES / "triage" / "triage.yaml"
    if not spec.is_file():
        console.print(f"[red]the demo needs the repository's examples/ folder ({spec} is missing)")
        return 2
    inputs = json.loads((EXAMPLES / "triage" / "tickets.json").read_text(encoding="utf-8"))
    console.rule("[bold]graphwright demo: ticket triage graph")

    def show(kind: str, ns: tuple[str, ...], node: str, payload: object) -> None:
        where = "/".join([p.split(":")[0] for p in ns] + [node])
        if kind == "update":
            console.print(f"[green]✓[/] {where}: ", end="")
            console.print(json.dumps(payload, default=str)[:160], markup=False, highlight=False)

    result = asyncio.run(run_spec(spec, inputs, runs_dir=runs_dir, on_event=show))
    console.rule("report")
    console.print(result.state["report"], highlight=False, markup=False)
    console.print(f"[dim]thread {result.thread_id} · run record {result.record_path}[/]")
    return 0
