"""Channel types and reducers, from the strings a spec uses (`list[str]`, `append`)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

_SCALARS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "any": Any,
    "Any": Any,
    "None": type(None),
    "list": list,
    "dict": dict,
}


def parse_type(text: str) -> Any:
    """`"list[dict[str, int]] | None"` -> the Python type. Raises ValueError."""
    if text == "messages":
        from langchain_core.messages import AnyMessage

        return list[AnyMessage]
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"type {text!r} does not parse") from exc
    return _build(tree, text)


def _build(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Name) and node.id in _SCALARS:
        return _SCALARS[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _build(node.left, text) | None if _is_none(node.right) else (
            _build(node.left, text) | _build(node.right, text)
        )
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        built = [_build(a, text) for a in args]
        if node.value.id == "list" and len(built) == 1:
            return list[built[0]]  # type: ignore[valid-type]
        if node.value.id == "dict" and len(built) == 2:
            return dict[built[0], built[1]]  # type: ignore[valid-type]
    known = ", ".join([*sorted(set(_SCALARS) - {"Any"}), "messages"])
    raise ValueError(f"unknown type {text!r} (use {known}, list[T], dict[K, V], T | None)")


def _is_none(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id == "None"
    )


def _append(left: Any, right: Any) -> list[Any]:
    left = [] if left is None else list(left)
    return left + (list(right) if isinstance(right, list | tuple) else [right])


def _merge(left: Any, right: Any) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


def _add(left: Any, right: Any) -> Any:
    return right if left is None else operator.add(left, right)


def reducer_for(name: str | None) -> Callable[[Any, Any], Any] | None:
    if name in (None, "replace"):
        return None
    if name == "append":
        return _append
    if name == "merge":
        return _merge
    if name == "add":
        return _add
    if name == "messages":
        from langgraph.graph.message import add_messages

        return add_messages  # type: ignore[return-value]
    raise ValueError(f"unknown reducer {name!r} (use replace, append, merge, add, messages)")
