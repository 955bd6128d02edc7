"""`tool`: call one tool as a graph step (no model), arguments from channels."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphwright.agents._common import build_tools
from graphwright.agents._configs import ToolNodeConfig
from graphwright.plugins import NodeContext
from graphwright.tools import ToolError


def tool_node(config: ToolNodeConfig, ctx: NodeContext) -> Callable[..., Any]:
    """Node kind factory of `tool`."""
    (tool,) = build_tools(ctx, [config.tool]).values()

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        args = {**config.args, **{arg: state.get(ch) for arg, ch in config.inputs.items()}}
        try:
            return {config.output: await tool.arun(args)}
        except ToolError as exc:
            if config.error_output is None:
                raise ToolError(f"tool node {ctx.node_id!r} ({tool.name}): {exc}") from exc
            return {config.error_output: f"Error: {exc}"}

    node.tool = tool  # type: ignore[attr-defined]
    return node
