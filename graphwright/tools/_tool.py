"""`Tool`: a name, a description and an argument model; `@tool` makes one from a function."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model


class ToolError(Exception):
    """Raised by a tool to report a failure the model should read and act on."""


class ToolArgumentsError(ToolError):
    """The model sent arguments the tool's argument model rejects."""


def _describe_validation(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid arguments for tool {name!r}: " + "; ".join(parts)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


class Tool:
    """A callable the model may use: `name`, `description`, `args_model`, `func`.

    `func` takes the validated fields as keyword arguments and may be sync or
    async; whatever it returns is rendered to text (JSON for non-strings).
    """

    def __init__(
        self,
        name: str,
        description: str,
        args_model: type[BaseModel],
        func: Callable[..., Any] | Callable[..., Awaitable[Any]],
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, _ or -")
        self.name, self.description = name, description
        self.args_model, self.func = args_model, func
        self.is_async = inspect.iscoroutinefunction(func)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_schema(self) -> dict[str, Any]:
        """The tool in OpenAI's function format (what `bind_tools` takes)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, args: Mapping[str, Any] | str | None) -> BaseModel:
        """Arguments (a dict, or JSON text from a model) -> the argument model."""
        if args is None:
            args = {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolArgumentsError(
                    f"arguments for tool {self.name!r} are not valid JSON: {exc}"
                ) from None
        if not isinstance(args, Mapping):
            raise ToolArgumentsError(
                f"arguments for tool {self.name!r} must be a JSON object, got {type(args).__name__}"
            )
        try:
            return self.args_model.model_validate(dict(args))
        except ValidationError as exc:
            raise ToolArgumentsError(_describe_validation(self.name, exc)) from None

    def _kwargs(self, model: BaseModel) -> dict[str, Any]:
        return {k: getattr(model, k) for k in type(model).model_fields}

    def run(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Validate and call synchronously (an async tool runs in a fresh loop)."""
        kwargs = self._kwargs(self.validate(args))
        if self.is_async:
            return _render(asyncio.run(self.func(**kwargs)))  # type: ignore[arg-type]
        return _render(self.func(**kwargs))

    async def arun(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Validate and call; a sync tool runs in a worker thread, off the event loop."""
        kwargs = self._kwargs(self.validate(args))
        if self.is_async:
            return _render(await self.func(**kwargs))
        return _render(await asyncio.to_thread(self.func, **kwargs))


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """Description and per-argument help from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("\nArgs:")
    params: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        m = re.match(r"\s{0,8}(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line)
        if m and not line.startswith(" " * 9):
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip() and params:
            current = None
    return head.strip(), params


def args_model_for(func: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of `func`'s parameters, from its type hints."""
    from pydantic import Field

    hints = get_type_hints(func)
    _, help_ = _doc_parts(func.__doc__ or "")
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to a model")
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, Field(default=default, description=help_.get(pname)))
    model_name = "".join(p.capitalize() for p in re.split(r"[_-]", name)) + "Args"
    return create_model(  # type: ignore[call-overload, no-any-return]
        model_name, __config__=ConfigDict(extra="forbid"), **fields
    )


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a `Tool` from a typed function: `@tool` or `@tool(name=..., description=...)`.

    The JSON schema comes from the type hints (through pydantic), the
    description from the docstring (its `Args:` section describes each argument).
    """

    def make(f: Callable[..., Any]) -> Tool:
        tool_name = name or f.__name__
        desc = description if description is not None else _doc_parts(f.__doc__ or "")[0]
        return Tool(tool_name, desc or tool_name, args_model_for(f, tool_name), f)

    return make(func) if func is not None else make
