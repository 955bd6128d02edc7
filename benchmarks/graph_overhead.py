"""Per-step overhead of a graphwright spec vs the same graph written on langgraph.

Two shapes: a 100-node chain, and a 32-way fan-out joined by one node. Every node
writes one small value (graphwright checks its type and that it can be
checkpointed). Both graphs run in this process, interleaved, with no checkpointer.

    python benchmarks/graph_overhead.py [--repeats 30]

Prints a table and writes benchmarks/results/graph_overhead.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import platform
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from graphwright.graphs import GraphSpec, compile_spec


def step(state: dict[str, Any], i: int) -> dict[str, Any]:
    return {"last": i}


def branch(state: dict[str, Any], i: int) -> dict[str, Any]:
    return {"hits": [i]}


def join(state: dict[str, Any]) -> dict[str, Any]:
    return {"last": len(state["hits"])}


class ChainState(TypedDict, total=False):
    last: int


class FanState(TypedDict, total=False):
    last: int
    hits: Annotated[list[int], operator.add]


def raw_chain(n: int) -> Any:
    b: Any = StateGraph(ChainState)
    for i in range(n):
        b.add_node(f"n{i}", functools.partial(step, i=i))
        b.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    b.add_edge(f"n{n - 1}", END)
    return b.compile()


def raw_fan(n: int) -> Any:
    b: Any = StateGraph(FanState)
    b.add_node("join", join)
    for i in range(n):
        b.add_node(f"b{i}", functools.partial(branch, i=i))
        b.add_edge(START, f"b{i}")
    b.add_edge([f"b{i}" for i in range(n)], "join")
    b.add_edge("join", END)
    return b.compile()


def spec_chain(n: int) -> Any:
    nodes = [{"id": f"n{i}", "kind": "python",
              "with": {"function": "__main__:step", "args": {"i": i}}} for i in range(n)]
    edges = [{"from": "START" if i == 0 else f"n{i - 1}", "to": f"n{i}"} for i in range(n)]
    edges.append({"from": f"n{n - 1}", "to": "END"})
    spec = GraphSpec.model_validate({"name": "chain", "state": {"last": {"type": "int"}},
                                     "nodes": nodes, "edges": edges, "max_steps": n + 10})
    return compile_spec(spec)


def spec_fan(n: int) -> Any:
    nodes = [{"id": f"b{i}", "kind": "python",
              "with": {"function": "__main__:branch", "args": {"i": i}, "outputs": ["hits"]}}
             for i in range(n)]
    nodes.append({"id": "join", "kind": "python", "with": {"function": "__main__:join"}})
    edges = [{"from": "START", "to": [f"b{i}" for i in range(n)]},
             {"from": [f"b{i}" for i in range(n)], "to": "join"}, {"from": "join", "to": "END"}]
    spec = GraphSpec.model_validate({
        "name": "fan", "nodes": nodes, "edges": edges,
        "state": {"last": {"type": "int"}, "hits": {"type": "list[int]", "reducer": "append"}}})
    return compile_spec(spec)


def time_per_step(graph: Any, inputs: dict[str, Any], steps: int) -> float:
    t0 = time.perf_counter()
    graph.invoke(inputs)
    return (time.perf_counter() - t0) / steps


def measure(ours: Any, raw: Any, inputs: dict[str, Any], steps: int, repeats: int) -> dict[str, Any]:
    for g in (ours, raw):  # warm-up: imports, caches
        g.invoke(inputs)
    a, b = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        a.append(time_per_step(ours, inputs, steps))
        b.append(time_per_step(raw, inputs, steps))
    ours_med, raw_med = statistics.median(a), statistics.median(b)
    return {"graphwright_us_per_step": ours_med * 1e6, "langgraph_us_per_step": raw_med * 1e6,
            "ratio": ours_med / raw_med, "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "graph_overhead.json")
    args = ap.parse_args()
    results = {
        "chain_100": measure(spec_chain(100), raw_chain(100), {"last": -1}, 100, args.repeats),
        # the fan-out runs in 2 steps (32 branches, then the join); per node is the fairer unit
        "fanout_32": measure(spec_fan(32), raw_fan(32), {"hits": []}, 33, args.repeats),
    }
    print(f"{'graph':<12} {'graphwright µs/node':>20} {'langgraph µs/node':>18} {'ratio':>7}")
    for name, r in results.items():
        print(f"{name:<12} {r['graphwright_us_per_step']:>20.1f} {r['langgraph_us_per_step']:>18.1f}"
              f" {r['ratio']:>7.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
