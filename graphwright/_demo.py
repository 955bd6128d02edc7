"""`graphwright demo`: the main job on the embedded defaults, from a fresh clone.

It grows as capabilities land. Now:
1. the triage graph: parallel fan-out, a conditional edge, a nested subgraph, templates;
2. an assistant graph on the local model (SmolLM2-135M in-process, CPU): a router sends
   arithmetic to an agent whose calculator calls are grammar-constrained, the rest to a
   direct answer.
Each run is checkpointed to SQLite and leaves a run record under the runs directory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUESTIONS = ["What is 17*23?", "What is the capital of France?"]


def run_demo(runs_dir: Path) -> int:
    from graphwright.graphs._run import run_spec
    from graphwright.providers import UsageRecorder

    console = Console(stderr=True)
    triage = EXAMPLES / "triage" / "triage.yaml"
    assistant = EXAMPLES / "assistant" / "assistant.yaml"
    if not triage.is_file() or not assistant.is_file():
        console.print(f"[red]the demo needs the repository's examples/ folder ({EXAMPLES})")
        return 2

    def show(kind: str, ns: tuple[str, ...], node: str, payload: Any) -> None:
        where = "/".join([p.split(":")[0] for p in ns] + [node])
        if kind == "update":
            console.print(f"[green]✓[/] {where}: ", end="")
            text = json.dumps(payload, default=lambda o: getattr(o, "content", str(o)))
            console.print(text[:160], markup=False, highlight=False)

    console.rule("[bold]1. ticket triage: fan-out, conditional edge, nested subgraph")
    inputs = json.loads((EXAMPLES / "triage" / "tickets.json").read_text(encoding="utf-8"))
    result = asyncio.run(run_spec(triage, inputs, runs_dir=runs_dir, on_event=show,
                                  callbacks=[UsageRecorder()]))
    console.print(result.state["report"], highlight=False, markup=False)
    console.print(f"[dim]thread {result.thread_id} · run record {result.record_path}[/]")

    console.rule("[bold]2. assistant on the local model (SmolLM2-135M, CPU)")
    for question in QUESTIONS:
        console.print(f"[bold]Q:[/] {question}", highlight=False)
        result = asyncio.run(run_spec(assistant, {"question": question}, runs_dir=runs_dir,
                                      on_event=show, callbacks=[UsageRecorder()]))
        console.print("[bold]A:[/] ", end="")
        console.print(result.state["answer"], highlight=False, markup=False)
        console.print(f"[dim]thread {result.thread_id} · run record {result.record_path}[/]")
    return 0
