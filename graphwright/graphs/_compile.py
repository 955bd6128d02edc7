"""Check a GraphSpec (all problems at once) and compile it to a langgraph StateGraph."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from graphwright.graphs._errors import SpecError, SpecIssue, display_path
from graphwright.graphs._expr import Expression, ExpressionError
from graphwright.graphs._spec import END, START, GraphSpec, load_spec
from graphwright.graphs._state import Channels
from graphwright.plugins import NodeContext, Registry, UnknownComponentError, default_registry


def _configs(spec: GraphSpec, registry: Registry, issues: list[SpecIssue]) -> dict[str, Any]:
    """Validate each node's `with:` by its kind's config model."""
    configs: dict[str, Any] = {}
    for i, node in enumerate(spec.nodes):
        try:
            comp = registry.get("node_kind", node.kind).component
        except UnknownComponentError as exc:
            issues.append(spec.issue(str(exc), ("nodes", i, "kind")))
            continue
        if comp.config is None:
            configs[node.id] = node.with_
            continue
        try:
            configs[node.id] = comp.config.model_validate(node.with_)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("nodes", i, "with", *err["loc"])
                issues.append(spec.issue(f"{err['msg']} (node kind {node.kind!r})", loc))
            continue
        _check_inner(spec, registry, configs[node.id], ("nodes", i, "with"), issues)
    return configs


def _check_inner(spec: GraphSpec, registry: Registry, config: Any, at: tuple[str | int, ...],
                 issues: list[SpecIssue]) -> None:
    """Node kinds that wrap other node kinds (`map`) declare them with `inner_nodes()`:
    `(key path under with:, kind, with)` each, checked here as a top-level node is."""
    inner = getattr(config, "inner_nodes", None)
    for sub, kind, with_ in (inner() if callable(inner) else ()):
        try:
            comp = registry.get("node_kind", kind).component
        except UnknownComponentError as exc:
            issues.append(spec.issue(str(exc), (*at, *sub, "kind")))
            continue
        if comp.config is None:
            continue
        try:
            cfg = comp.config.model_validate(with_)
        except ValidationError as exc:
            for err in exc.errors():
                issues.append(spec.issue(f"{err['msg']} (node kind {kind!r})",
                                         (*at, *sub, "with", *err["loc"])))
            continue
        _check_inner(spec, registry, cfg, (*at, *sub, "with"), issues)


def _declared(config: Any, method: str) -> list[str]:
    fn = getattr(config, method, None)
    return list(fn()) if callable(fn) else []


def check(
    spec: GraphSpec, registry: Registry | None = None, *, _stack: tuple[Path, ...] = ()
) -> tuple[list[SpecIssue], dict[str, Any]]:
    """Every problem in `spec` and in the subgraph specs it runs, plus the validated node configs."""
    registry = registry or default_registry()
    issues: list[SpecIssue] = []
    channels = Channels.from_spec(spec, issues)
    ids: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.id in ids:
            issues.append(spec.issue(f"duplicate node id {node.id!r}", ("nodes", i, "id")))
        if node.id in (START, END):
            issues.append(spec.issue(f"{node.id!r} is reserved", ("nodes", i, "id")))
        ids.setdefault(node.id, i)
    configs = _configs(spec, registry, issues)

    def need_node(name: str, loc: tuple[str | int, ...], *, allow: tuple[str, ...]) -> None:
        if name in ids or name in allow:
            return
        close = difflib.get_close_matches(name, list(ids), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        issues.append(spec.issue(f"edge refers to unknown node {name!r}{hint}", loc))

    def need_channel(name: str, loc: tuple[str | int, ...], what: str) -> None:
        if name not in channels.types:
            close = difflib.get_close_matches(name, list(channels.types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            issues.append(spec.issue(f"{what} unknown channel {name!r}{hint}", loc))

    # node configs that declare the channels they read and write
    writes: dict[str, list[str]] = {}
    for i, node in enumerate(spec.nodes):
        cfg = configs.get(node.id)
        written = node.writes if node.writes is not None else _declared(cfg, "writes")
        writes[node.id] = written
        for ch in written:
            need_channel(ch, ("nodes", i, "with"), f"node {node.id!r} writes")
        for ch in _declared(cfg, "reads"):
            need_channel(ch, ("nodes", i, "with"), f"node {node.id!r} reads")

    successors: dict[str, set[str]] = {}
    for e, edge in enumerate(spec.edges):
        for src in edge.sources():
            need_node(src, ("edges", e, "from"), allow=(START,))
        if edge.when is not None:
            for c, case in enumerate(edge.when):
                need_node(case.to, ("edges", e, "when", c, "to"), allow=(END,))
                if case.if_ is not None:
                    try:
                        expr = Expression(case.if_)
                    except ExpressionError as exc:
                        issues.append(spec.issue(str(exc), ("edges", e, "when", c, "if")))
                        continue
                    for name in sorted(expr.names):
                        need_channel(name, ("edges", e, "when", c, "if"), "the `when` expression names")
        elif edge.map is not None:
            need_node(edge.map.to, ("edges", e, "map", "to"), allow=())
            need_channel(edge.map.over, ("edges", e, "map", "over"), "the fan-out is over")
            need_channel(edge.map.as_, ("edges", e, "map", "as"), "the fan-out item (`as`) is")
            # every parallel copy of the target writes its channels in the same step
            for ch in writes.get(edge.map.to, []):
                if ch in channels.types and channels.reducers.get(ch) is None:
                    issues.append(spec.issue(
                        f"channel {ch!r} is written by the parallel copies of node "
                        f"{edge.map.to!r} (fan-out over {edge.map.over!r}) in the same step but "
                        "has no reducer; give it one (append, merge, add)",
                        ("edges", e, "map"),
                    ))
        else:
            for t, tgt in enumerate(edge.targets()):
                need_node(tgt, ("edges", e, "to") if isinstance(edge.to, str) else ("edges", e, "to", t),
                          allow=(END,))
        for src in edge.sources():
            successors.setdefault(src, set()).update(edge.targets())

    # fan-in: nodes started by the same source in one step must not write one plain channel
    for src, targets in successors.items():
        static = [t for t in targets if t in ids]
        for ch in channels.types:
            writers = sorted(t for t in static if ch in writes.get(t, []))
            if len(writers) > 1 and channels.reducers.get(ch) is None and not _exclusive(spec, src):
                e = next(i for i, ed in enumerate(spec.edges) if src in ed.sources())
                issues.append(spec.issue(
                    f"channel {ch!r} is written in the same step by nodes {', '.join(writers)} "
                    f"(all after {src!r}) but has no reducer; give it one (append, merge, add) "
                    "or write different channels",
                    ("edges", e),
                ))

    for key in ("interrupt_before", "interrupt_after"):
        for j, name in enumerate(getattr(spec, key)):
            need_node(name, (key, j), allow=())

    # reported together with every other problem (an unknown edge target is harmless here)
    if spec.nodes:
        reached, todo = set(), [START]
        while todo:
            for nxt in successors.get(todo.pop(), ()):
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for i, node in enumerate(spec.nodes):
            if node.id not in reached:
                issues.append(spec.issue(f"node {node.id!r} is unreachable from START", ("nodes", i)))
    _check_subgraphs(spec, registry, configs, issues, _stack)
    return issues, configs


def _check_subgraphs(
    spec: GraphSpec, registry: Registry, configs: dict[str, Any], issues: list[SpecIssue],
    stack: tuple[Path, ...],
) -> None:
    """Open each `subgraph` node's spec: its own problems (in its file) and the channels mapped."""
    from graphwright.graphs.nodes import SubgraphConfig

    here = (*stack, *([spec.source_path] if spec.source_path else []))
    for i, node in enumerate(spec.nodes):
        cfg = configs.get(node.id)
        if not isinstance(cfg, SubgraphConfig):
            continue
        at = ("nodes", i, "with")
        path = (spec.base_dir / cfg.spec).resolve()
        if path in here:
            chain = " -> ".join(p.name for p in (*here, path))
            issues.append(spec.issue(f"subgraph cycle: {chain}", (*at, "spec")))
            continue
        if not path.is_file():
            issues.append(spec.issue(f"subgraph spec not found: {display_path(path)}", (*at, "spec")))
            continue
        try:
            sub = load_spec(path)
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        issues.extend(check(sub, registry, _stack=here)[0])
        mapped = [("inputs", name, name) for name in cfg.inputs]
        mapped += [("outputs", ours, name) for ours, name in cfg.outputs.items()]
        for key, where, name in mapped:
            if name not in sub.state:
                close = difflib.get_close_matches(name, list(sub.state), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                issues.append(spec.issue(
                    f"subgraph {display_path(path)} has no channel {name!r}{hint}", (*at, key, where)
                ))


def _exclusive(spec: GraphSpec, src: str) -> bool:
    """Targets of conditional (`when:`) edges run one at a time, never together."""
    return all(ed.when is not None for ed in spec.edges if src in ed.sources())


def compile_spec(
    spec: GraphSpec | str | Path,
    *,
    registry: Registry | None = None,
    checkpointer: Any = None,
    options: dict[str, Any] | None = None,
    _stack: tuple[Path, ...] = (),
) -> Any:
    """Compile a spec (or spec file) into a langgraph CompiledStateGraph.

    Raises SpecError listing every problem before any node is built or run.
    """
    from langgraph.graph import END as LG_END
    from langgraph.graph import START as LG_START
    from langgraph.graph import StateGraph
    from langgraph.types import Send

    if not isinstance(spec, GraphSpec):
        spec = load_spec(spec)
    registry = registry or default_registry()
    issues, configs = check(spec, registry, _stack=_stack)
    if issues:
        raise SpecError(issues)
    channels = Channels.from_spec(spec, [])
    options = dict(options or {})
    options["_subgraph_stack"] = (*_stack, *([spec.source_path] if spec.source_path else []))

    builder: Any = StateGraph(channels.state_schema(spec.name))
    for node in spec.nodes:
        ctx = NodeContext(node.id, registry, spec.base_dir, options)
        try:
            fn = registry.build("node_kind", node.kind, configs[node.id], ctx=ctx)
        except SpecError:
            raise
        except Exception as exc:
            i = spec.nodes.index(node)
            raise SpecError([spec.issue(f"cannot build node: {type(exc).__name__}: {exc}",
                                        ("nodes", i, "with"))]) from exc
        builder.add_node(node.id, channels.wrap(node.id, fn))

    def lg(name: str) -> str:
        return {START: LG_START, END: LG_END}.get(name, name)

    for edge in spec.edges:
        srcs = [lg(s) for s in edge.sources()]
        if edge.when is not None:
            builder.add_conditional_edges(
                srcs[0], _router(edge.when, channels), {c.to: lg(c.to) for c in edge.when}
            )
        elif edge.map is not None:
            builder.add_conditional_edges(srcs[0], _fan_out(edge.map.over, edge.map.to,
                                                            edge.map.as_, channels, Send))
        else:
            for tgt in edge.targets():
                builder.add_edge(srcs if len(srcs) > 1 else srcs[0], lg(tgt))

    graph = builder.compile(
        checkpointer=checkpointer,
        interrupt_before=spec.interrupt_before or None,
        interrupt_after=spec.interrupt_after or None,
        name=spec.name,
    )
    graph = graph.with_config(recursion_limit=spec.max_steps)
    graph.graphwright_spec = spec  # for drawing and for tools that want the source
    return graph


def _router(cases: list[Any], channels: Channels) -> Callable[[dict[str, Any]], str]:
    compiled = [(Expression(c.if_) if c.if_ is not None else None, c.to) for c in cases]
    fallback = next((to for expr, to in compiled if expr is None), END)

    def route(state: dict[str, Any]) -> str:
        view = channels.with_defaults(state)
        for expr, to in compiled:
            if expr is None:
                continue
            try:
                hit = expr.evaluate(view)
            except Exception as exc:  # say which condition failed, not only the node before it
                raise ExpressionError(
                    f"`when: {expr.source}` (edge to {to!r}) failed: {type(exc).__name__}: {exc}"
                ) from exc
            if hit:
                return to
        return fallback

    return route


def _fan_out(over: str, to: str, as_: str, channels: Channels, send: Any) -> Callable[..., Any]:
    def fan_out(state: dict[str, Any]) -> list[Any]:
        view = channels.with_defaults(state)
        return [send(to, {**view, as_: item}) for item in view.get(over) or []]

    return fan_out


def load(
    path: str | Path,
    *,
    registry: Registry | None = None,
    checkpointer: Any = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """`graphwright.load("spec.yaml")`: the compiled langgraph graph, ready to invoke/stream."""
    return compile_spec(load_spec(path), registry=registry, checkpointer=checkpointer,
                        options=options)
