"""graphwright: agent graphs of LLMs, tools, retrievers and judges, on LangGraph.

The public API is flat and re-exported here; names resolve lazily so that importing
graphwright (and `graphwright --help`) stays fast:

    import graphwright
    graph = graphwright.load("examples/hello.yaml")   # a compiled langgraph graph
    graph.invoke({"text": "hello world"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphwright._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # graphs
    "load": "graphwright.graphs",
    "compile_spec": "graphwright.graphs",
    "check": "graphwright.graphs",
    "load_spec": "graphwright.graphs",
    "parse_spec": "graphwright.graphs",
    "GraphSpec": "graphwright.graphs",
    "SpecError": "graphwright.graphs",
    "SpecIssue": "graphwright.graphs",
    "GraphRunError": "graphwright.graphs",
    "StateWriteError": "graphwright.graphs",
    "run_spec": "graphwright.graphs._run",
    "resume_thread": "graphwright.graphs._run",
    "RunResult": "graphwright.graphs._run",
    # plugins
    "Component": "graphwright.plugins",
    "NodeContext": "graphwright.plugins",
    "Registry": "graphwright.plugins",
    "default_registry": "graphwright.plugins",
    "hookimpl": "graphwright.plugins",
}

__all__ = [
    "Component",
    "GraphRunError",
    "GraphSpec",
    "NodeContext",
    "Registry",
    "RunResult",
    "SpecError",
    "SpecIssue",
    "StateWriteError",
    "__version__",
    "check",
    "compile_spec",
    "default_registry",
    "hookimpl",
    "load",
    "load_spec",
    "parse_spec",
    "resume_thread",
    "run_spec",
]

if TYPE_CHECKING:
    from graphwright.graphs import (
        GraphRunError,
        GraphSpec,
        SpecError,
        SpecIssue,
        StateWriteError,
        check,
        compile_spec,
        load,
        load_spec,
        parse_spec,
    )
    from graphwright.graphs._run import RunResult, resume_thread, run_spec
    from graphwright.plugins import Component, NodeContext, Registry, default_registry, hookimpl


__getattr__ = lazy_exports(__name__, _EXPORTS)
