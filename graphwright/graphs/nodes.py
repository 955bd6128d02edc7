"""The graph-level node kinds: `python`, `template`, `subgraph`, `map`.

Each is a pydantic config model plus a plain factory `(config, ctx) -> node function`,
so they work in a spec (registered through the plugin hooks by `graphwright._builtins`)
and in a hand-written langgraph `StateGraph` alike:

    builder.add_node("greet", python_node(PythonConfig(function="mymod:greet")))
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphwright.plugins import Component, NodeContext

NodeFn = Callable[[dict[str, Any]], Any]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- python -----------------------------------------------------------------
class PythonConfig(_Config):
    function: str = Field(description="`package.module:function`, or `file.py:function` "
                                      "relative to the spec's folder")
    args: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments")
    outputs: list[str] | None = Field(default=None, description="channels the function writes")

    def writes(self) -> list[str]:
        return list(self.outputs or [])


def import_function(ref: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """Resolve `pkg.mod:fn`, `pkg.mod.fn` or `path/to/file.py:fn`."""
    if ":" in ref:
        mod_name, _, attr = ref.partition(":")
    else:
        mod_name, _, attr = ref.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"function {ref!r} is not of the form `module:function`")
    if mod_name.endswith(".py"):
        path = (Path(base_dir or ".") / mod_name).resolve()
        if not path.is_file():
            raise ValueError(f"function {ref!r}: no file {path}")
        key = f"graphwright_user_{abs(hash(str(path)))}"
        module = sys.modules.get(key)
        if module is None:
            spec = importlib.util.spec_from_file_location(key, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"function {ref!r}: {mod_name} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]


def python_node(config: PythonConfig, ctx: NodeContext | None = None) -> NodeFn:
    fn = import_function(config.function, ctx.base_dir if ctx else None)
    if not config.args:
        return fn
    if inspect.iscoroutinefunction(fn):
        async def call_async(state: dict[str, Any]) -> Any:
            return await fn(state, **config.args)

        return call_async
    return lambda state: fn(state, **config.args)


# -- template ---------------------------------------------------------------
class TemplateConfig(_Config):
    template: str | None = Field(default=None, description="inline jinja2 template")
    file: str | None = Field(default=None, description="template file, relative to the spec")
    output: str = Field(description="channel that receives the rendered text")

    @model_validator(mode="after")
    def _one_source(self) -> TemplateConfig:
        if (self.template is None) == (self.file is None):
            raise ValueError("give exactly one of `template` or `file`")
        return self

    def writes(self) -> list[str]:
        return [self.output]

    def reads(self) -> list[str]:
        if self.template is None:
            return []
        from jinja2 import meta

        env = _jinja_env()
        return sorted(meta.find_undeclared_variables(env.parse(self.template)))


def _jinja_env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # sandboxed: templates come from spec files, which may not be fully trusted
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


def template_node(config: TemplateConfig, ctx: NodeContext | None = None) -> NodeFn:
    source = config.template
    if source is None:
        assert config.file is not None
        source = (Path(ctx.base_dir if ctx else ".") / config.file).read_text(encoding="utf-8")
    template = _jinja_env().from_string(source)

    def render(state: dict[str, Any]) -> dict[str, Any]:
        return {config.output: template.render(**state)}

    return render


# -- subgraph ---------------------------------------------------------------
class SubgraphConfig(_Config):
    spec: str = Field(description="another graph spec file, relative to this one")
    inputs: dict[str, str] = Field(default_factory=dict, description="sub channel <- our channel")
    outputs: dict[str, str] = Field(default_factory=dict, description="our channel <- sub channel")

    def reads(self) -> list[str]:
        return list(self.inputs.values())

    def writes(self) -> list[str]:
        return list(self.outputs)


def subgraph_node(config: SubgraphConfig, ctx: NodeContext) -> Any:
    from graphwright.graphs._compile import compile_spec
    from graphwright.graphs._errors import SpecError, SpecIssue

    path = (Path(ctx.base_dir or ".") / config.spec).resolve()
    stack = tuple(ctx.options.get("_subgraph_stack", ()))
    if path in stack:
        chain = " -> ".join(str(p.name) for p in (*stack, path))
        raise SpecError([SpecIssue(f"subgraph cycle: {chain}", "with.spec", str(path))])
    inner = compile_spec(path, registry=ctx.registry, options=ctx.options, _stack=stack)

    from langchain_core.runnables import RunnableLambda

    def inputs(state: dict[str, Any]) -> dict[str, Any]:
        return {sub: state.get(ours) for sub, ours in config.inputs.items()}

    def outputs(result: dict[str, Any]) -> dict[str, Any]:
        return {ours: result.get(sub) for ours, sub in config.outputs.items()}

    # invoked inside a node, langgraph treats it as a nested graph: it shares the
    # parent's checkpointer and its events stream with `subgraphs=True`
    def run(state: dict[str, Any]) -> dict[str, Any]:
        return outputs(inner.invoke(inputs(state)))

    async def arun(state: dict[str, Any]) -> dict[str, Any]:
        return outputs(await inner.ainvoke(inputs(state)))

    return RunnableLambda(run, afunc=arun, name=ctx.node_id)


# -- map --------------------------------------------------------------------
class InnerNode(_Config):
    kind: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class MapConfig(_Config):
    over: str = Field(description="list channel to iterate")
    as_: str = Field(default="item", alias="as", description="name each item gets in the inner state")
    node: InnerNode = Field(description="the node kind run once per item")
    collect: str = Field(description="key of the inner node's update to collect")
    output: str = Field(description="channel that receives the list of collected values")
    concurrency: int = Field(default=8, ge=1)

    def reads(self) -> list[str]:
        return [self.over]

    def writes(self) -> list[str]:
        return [self.output]

    def inner_nodes(self) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
        """The wrapped node, so `graph check` validates its kind and config too."""
        return [(("node",), self.node.kind, self.node.with_)]


def map_node(config: MapConfig, ctx: NodeContext) -> Any:
    from langchain_core.runnables import RunnableLambda

    inner_ctx = NodeContext(f"{ctx.node_id}.item", ctx.registry, ctx.base_dir, ctx.options)
    inner = ctx.registry.build("node_kind", config.node.kind, config.node.with_, ctx=inner_ctx)
    limit = asyncio.Semaphore(config.concurrency)

    from langchain_core.runnables import Runnable

    # the inner kind may be a plain function (sync or async) or a Runnable (subgraph, map)
    def call(state: dict[str, Any]) -> Any:
        return inner.invoke(state) if isinstance(inner, Runnable) else inner(state)

    async def one(state: dict[str, Any], item: Any) -> Any:
        async with limit:
            sub = {**state, config.as_: item}
            out = await inner.ainvoke(sub) if isinstance(inner, Runnable) else inner(sub)
            if inspect.isawaitable(out):
                out = await out
            return (out or {}).get(config.collect)

    async def arun(state: dict[str, Any]) -> dict[str, Any]:
        items = state.get(config.over) or []
        results = await asyncio.gather(*(one(state, item) for item in items))
        return {config.output: list(results)}

    def run(state: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in state.get(config.over) or []:
            out = call({**state, config.as_: item})
            if inspect.isawaitable(out):  # an async inner node under a sync invoke
                out = asyncio.run(_awaited(out))
            results.append((out or {}).get(config.collect))
        return {config.output: results}

    return RunnableLambda(run, afunc=arun, name=ctx.node_id)


async def _awaited(aw: Any) -> Any:
    return await aw


def components() -> list[Component]:
    return [
        Component("python", python_node, PythonConfig, "call a Python function `state -> update`"),
        Component("template", template_node, TemplateConfig, "render a jinja2 template into a channel"),
        Component("subgraph", subgraph_node, SubgraphConfig, "run another graph spec as one node"),
        Component("map", map_node, MapConfig, "run a node kind over each item of a list channel"),
    ]
