"""What every model-using node kind shares: model and tool references, building them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphwright.plugins import NodeContext
from graphwright.tools import Tool, ToolBudget


class ModelRef(BaseModel):
    """`model: {provider: openai, model: gpt-4o-mini, temperature: 0}` or just `model: openai`.

    Every key but `provider` is the provider's own setting, validated by its config model.
    """

    model_config = ConfigDict(extra="allow")

    provider: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"provider": value} if isinstance(value, str) else value

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ToolRef(BaseModel):
    """`tools: [calculator, {name: http_get, with: {allow_hosts: [example.org]}}]`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


def _is_chat_model(value: Any) -> bool:
    return hasattr(value, "invoke") and hasattr(value, "ainvoke")


def coerce_model(value: Any) -> Any:
    """A `ModelRef` from YAML, or a ready chat model passed from Python."""
    if value is None or _is_chat_model(value) or isinstance(value, ModelRef):
        return value
    return ModelRef.model_validate(value)


def coerce_tools(value: Any) -> Any:
    if value is None:
        return []
    return [v if isinstance(v, Tool) else ToolRef.model_validate(v) for v in value]


def build_model(ctx: NodeContext, ref: Any) -> Any:
    """The chat model for a node: run-wide options (`provider`, `cache`) applied."""
    if _is_chat_model(ref):
        return ref
    assert isinstance(ref, ModelRef)
    provider, settings = ref.provider, ref.settings()
    options = ctx.options or {}
    override = options.get("provider")
    if override and override != provider:
        # The node's settings belong to its own provider (a script's replies
        # mean nothing to openai): the override brings its own settings.
        provider, settings = override, dict(options.get("provider_config") or {})
    elif override:
        settings.update(options.get("provider_config") or {})
    fields = _config_fields(ctx, provider)
    if "cache" in fields and options.get("cache") is False:
        settings["cache"] = False
    if "cache_path" in fields and not settings.get("cache_path"):
        path = options.get("cache_path")
        if path is None and options.get("run_dir") is not None:
            path = Path(options["run_dir"]) / "cache.sqlite"
        if path is not None:
            settings["cache_path"] = str(path)
    return ctx.registry.build("provider", provider, settings)


def _config_fields(ctx: NodeContext, provider: str) -> set[str]:
    comp = ctx.registry.get("provider", provider).component
    return set(comp.config.model_fields) if comp.config is not None else set()


def build_tools(ctx: NodeContext, refs: list[Any]) -> dict[str, Tool]:
    """The agent's allow-list: only these tools are offered and may run."""
    tools: dict[str, Tool] = {}
    for ref in refs:
        tool = ref if isinstance(ref, Tool) else ctx.registry.build("tool", ref.name, ref.with_)
        if tool.name in tools:
            raise ValueError(f"tool {tool.name!r} is listed twice")
        tools[tool.name] = tool
    return tools


def run_budget(ctx: NodeContext, limit: int | None = None) -> ToolBudget | None:
    """The tool-call budget shared by every node compiled with the same options.

    `options["tool_budget"]` (an int or a ToolBudget) sets the run-wide limit;
    the compiler passes one options dict to all nodes of a graph.
    """
    options = ctx.options if ctx.options is not None else {}
    shared = options.get("_tool_budget")
    if isinstance(shared, ToolBudget):
        return shared
    given = options.get("tool_budget", limit)
    if given is None:
        return None
    budget = given if isinstance(given, ToolBudget) else ToolBudget(int(given))
    options["_tool_budget"] = budget
    return budget


def text_of(value: Any) -> str:
    """Plain text of a message, a content list, or any value from a channel."""
    content = getattr(value, "content", value)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    return "" if content is None else str(content)


def current_config() -> dict[str, Any] | None:
    """The RunnableConfig of the node being run (callbacks, metadata), if any."""
    try:
        from langgraph.config import get_config

        return dict(get_config())
    except RuntimeError:
        return None


def call_config(extra_metadata: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Config for a model call inside a node: the node's own, plus prompt metadata."""
    config = current_config()
    if extra_metadata:
        config = dict(config or {})
        config["metadata"] = {**(config.get("metadata") or {}), **extra_metadata}
    return config
