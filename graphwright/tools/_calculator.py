"""`calculator`: arithmetic through an AST walk (no `eval`), with size limits."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphwright.tools._tool import Tool, ToolError


class CalculatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_length: int = Field(default=500, ge=1, description="longest expression accepted")
    max_exponent: int = Field(default=1000, ge=1, description="largest |exponent| of **")
    max_magnitude: float = Field(default=1e300, gt=0, description="largest |intermediate value|")


class CalculatorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(description="an arithmetic expression, e.g. '17*23' or 'sqrt(2)/3'")


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
}
_CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


class _Evaluator:
    def __init__(self, cfg: CalculatorConfig) -> None:
        self.cfg = cfg

    def _check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"not a number: {value!r}")
        if abs(value) > self.cfg.max_magnitude:
            raise ToolError("result too large")
        return value

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return self._check(node.value)
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._check(_UNARY[type(node.op)](self.eval(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > self.cfg.max_exponent:
                raise ToolError(f"exponent {right} is larger than {self.cfg.max_exponent}")
            if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
                # big ints are exact and unbounded: stop before they eat memory
                if left and right and math.log10(abs(left)) + math.log10(abs(right)) > 300:
                    raise ToolError("result too large")
            try:
                return self._check(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("result too large") from None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            args = [self.eval(a) for a in node.args]
            if node.func.id == "factorial" and (not args or args[0] > 170):
                raise ToolError("factorial argument must be at most 170")
            try:
                return self._check(_FUNCS[node.func.id](*args))
            except (ValueError, TypeError, OverflowError) as exc:
                raise ToolError(f"{node.func.id}: {exc}") from None
        what = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
        allowed = ", ".join(sorted(_FUNCS) + sorted(_CONSTS))
        raise ToolError(
            f"unsupported expression {what!r}: use numbers, + - * / // % **, "
            f"parentheses and {allowed}"
        )


def evaluate(expression: str, config: CalculatorConfig | None = None) -> int | float:
    """Evaluate an arithmetic expression safely; raises `ToolError` on anything else."""
    cfg = config or CalculatorConfig()
    if len(expression) > cfg.max_length:
        raise ToolError(f"expression longer than {cfg.max_length} characters")
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"cannot parse {expression!r}: {exc.msg}") from None
    result = _Evaluator(cfg).eval(tree)
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return int(result)
    return result  # type: ignore[no-any-return]


def build_calculator(config: CalculatorConfig | None = None) -> Tool:
    cfg = config or CalculatorConfig()

    def calculator(expression: str) -> str:
        value = evaluate(expression, cfg)
        return repr(value) if isinstance(value, float) else str(value)

    return Tool(
        "calculator",
        "Evaluate an arithmetic expression exactly (+ - * / // % **, parentheses, "
        "sqrt, log, sin, cos, pi, e ...). Returns the number.",
        CalculatorArgs,
        calculator,
    )
