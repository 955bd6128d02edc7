"""Tools agents may call.

A `Tool` is a name, a description and a pydantic argument model; `@tool` makes
one from a typed function. Built-ins: `calculator`, `python` (a sandbox of
limited strength), `http_get` (host allow-list). `execute_tool_call` turns
every failure (unknown tool, bad JSON, wrong types, a raising tool, a spent
budget) into an error message for the model instead of a crash.
"""

from graphwright.tools._budget import ToolBudget, ToolBudgetExceeded
from graphwright.tools._calculator import CalculatorConfig, build_calculator, evaluate
from graphwright.tools._call import ToolOutcome, execute_tool_call
from graphwright.tools._http import HttpGetConfig, build_http_get, check_url
from graphwright.tools._plugin import components
from graphwright.tools._python import PythonToolConfig, build_python, run_python
from graphwright.tools._tool import Tool, ToolArgumentsError, ToolError, args_model_for, tool

__all__ = [
    "CalculatorConfig",
    "HttpGetConfig",
    "PythonToolConfig",
    "Tool",
    "ToolArgumentsError",
    "ToolBudget",
    "ToolBudgetExceeded",
    "ToolError",
    "ToolOutcome",
    "args_model_for",
    "build_calculator",
    "build_http_get",
    "build_python",
    "check_url",
    "components",
    "evaluate",
    "execute_tool_call",
    "run_python",
    "tool",
]
