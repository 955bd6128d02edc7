"""Graph specs (YAML/JSON, pydantic-validated) compiled to langgraph StateGraphs."""

from graphwright.graphs._compile import check, compile_spec, load
from graphwright.graphs._errors import GraphRunError, SpecError, SpecIssue, StateWriteError
from graphwright.graphs._expr import Expression, ExpressionError
from graphwright.graphs._spec import (
    END,
    START,
    ChannelSpec,
    EdgeSpec,
    GraphSpec,
    NodeSpec,
    load_spec,
    parse_spec,
)

__all__ = [
    "END",
    "START",
    "ChannelSpec",
    "EdgeSpec",
    "Expression",
    "ExpressionError",
    "GraphRunError",
    "GraphSpec",
    "NodeSpec",
    "SpecError",
    "SpecIssue",
    "StateWriteError",
    "check",
    "compile_spec",
    "load",
    "load_spec",
    "parse_spec",
]
