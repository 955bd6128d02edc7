"""The built-in tools as registry components."""

from __future__ import annotations

from graphwright.plugins import Component
from graphwright.tools._calculator import CalculatorConfig, build_calculator
from graphwright.tools._http import HttpGetConfig, build_http_get
from graphwright.tools._python import PythonToolConfig, build_python


def components() -> list[Component]:
    """Components of kind `tool`, for `register_tools`.

    `retriever` is not here: it arrives with RAG (graphwright.retrievers).
    """
    return [
        Component(
            "calculator",
            build_calculator,
            config=CalculatorConfig,
            description="safe arithmetic (an AST evaluator, no eval)",
        ),
        Component(
            "python",
            build_python,
            config=PythonToolConfig,
            description="run Python in a subprocess sandbox (time/memory limits, no network)",
        ),
        Component(
            "http_get",
            build_http_get,
            config=HttpGetConfig,
            description="GET a URL on an allow-listed host; private addresses refused",
        ),
    ]
