"""The calculator evaluates arithmetic through the AST and refuses everything else."""

from __future__ import annotations

import pytest

from graphwright.tools import CalculatorConfig, ToolError, evaluate


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("17*23", 391),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2**10", 1024),
        ("2^10", 1024),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("-3 + +5", 2),
        ("10 / 4", 2.5),
        ("sqrt(16)", 4),
        ("max(1, 5, 3)", 5),
        ("round(pi, 2)", 3.14),
        ("factorial(5)", 120),
        ("1e3 + 1", 1001),
    ],
)
def test_arithmetic(expr: str, value: float) -> None:
    assert evaluate(expr) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os').system('id')", "unsupported expression"),
        ("().__class__.__bases__[0].__subclasses__()", "unsupported expression"),
        ("open('/etc/passwd')", "unsupported expression"),
        ("x + 1", "unsupported expression"),
        ("lambda: 1", "unsupported expression"),
        ("[1, 2]", "unsupported expression"),
        ("'a' * 3", "unsupported expression"),
        ("1/0", "division by zero"),
        ("9**9**9", "exponent"),
        ("10**400", "too large"),
        ("factorial(1000)", "at most 170"),
        ("sqrt(-1)", "sqrt"),
        ("2 +", "cannot parse"),
        ("1" * 600, "longer than"),
    ],
)
def test_refusals_are_tool_errors(expr: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expr)


def test_limits_are_configurable() -> None:
    with pytest.raises(ToolError, match="exponent"):
        evaluate("2**20", CalculatorConfig(max_exponent=10))
