"""Running a spec: stream events, checkpoint each step, write the run record, resume.

Checkpoints are written synchronously after every step (`durability="sync"`), so a
node whose step was checkpointed never runs again. A node interrupted mid-way (killed,
or raising) re-runs on resume: execution is at-least-once, so a node with side
effects must be idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphwright.graphs._compile import compile_spec
from graphwright.graphs._errors import GraphRunError, SpecError, SpecIssue, StateWriteError
from graphwright.graphs._record import RunRecord, find_thread_record
from graphwright.graphs._spec import GraphSpec, load_spec
from graphwright.graphs._state import Channels
from graphwright.plugins import Registry

# on_event(kind, namespace, node, payload): kind is "start", "update", "token", "error"
EventHandler = Callable[[str, tuple[str, ...], str, Any], None]


@dataclass
class RunResult:
    run_id: str
    thread_id: str
    status: str  # completed | interrupted | failed
    state: dict[str, Any]
    next_nodes: list[str] = field(default_factory=list)
    record_path: Path | None = None


def default_checkpoint_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / "checkpoints.sqlite"


def check_inputs(spec: GraphSpec, inputs: dict[str, Any]) -> None:
    channels = Channels.from_spec(spec, [])
    issues = []
    for key, value in inputs.items():
        try:
            channels.check_update("input", {key: value})
        except StateWriteError as exc:
            issues.append(SpecIssue(str(exc).replace("node 'input' wrote", "input"), f"inputs.{key}"))
    if issues:
        raise SpecError(issues)


async def run_spec(
    spec: GraphSpec | str | Path,
    inputs: dict[str, Any] | None,
    *,
    thread_id: str | None = None,
    checkpoint: str | None = None,
    runs_dir: Path = Path("runs"),
    registry: Registry | None = None,
    options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    on_event: EventHandler | None = None,
    _resumed: bool = False,
) -> RunResult:
    """Run (or, with inputs=None, continue) a graph on a thread, with a checkpointer."""
    from graphwright.graphs._checkpoint import open_async_checkpointer

    if not isinstance(spec, GraphSpec):
        spec = load_spec(spec)
    if inputs:
        check_inputs(spec, inputs)
    thread_id = thread_id or uuid.uuid4().hex[:12]
    runs_dir = Path(runs_dir)
    options = {**(options or {}), "run_dir": runs_dir}
    record = RunRecord(runs_dir, spec=spec, thread_id=thread_id, inputs=inputs or {},
                       checkpoint=checkpoint, resumed=_resumed)
    async with open_async_checkpointer(
        checkpoint, default_path=default_checkpoint_path(runs_dir)
    ) as saver:
        graph = compile_spec(spec, registry=registry, checkpointer=saver, options=options)
        # written once the spec compiled (a spec error leaves no "running" record behind)
        # and before any node runs (a run killed before its first checkpoint can restart)
        record.write()
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id},
                                  "recursion_limit": spec.max_steps}
        if callbacks:
            config["callbacks"] = callbacks
        failed: tuple[str, BaseException] | None = None
        last_node = "?"
        try:
            async for ns, mode, chunk in graph.astream(
                inputs, config, stream_mode=["tasks", "updates", "messages"],
                subgraphs=True, durability="sync",
            ):
                _dispatch(record, on_event, ns, mode, chunk)
                if mode == "tasks" and not ns and "input" in chunk:
                    last_node = chunk["name"]
                if mode == "tasks" and chunk.get("error") is not None and failed is None:
                    failed = (chunk["name"], chunk["error"])
        except Exception as exc:
            from langgraph.errors import GraphRecursionError

            snapshot = await graph.aget_state(config)
            node = failed[0] if failed else _failed_node(exc)
            err: Exception = exc
            if isinstance(exc, GraphRecursionError):
                # langgraph speaks of `recursion_limit`; the spec's knob is `max_steps`
                node = last_node
                err = StepLimitError(
                    f"the graph did not reach END within max_steps={spec.max_steps} steps "
                    "(a loop without an exit?); fix the loop or raise `max_steps` in the spec"
                )
            record.finish("failed", state=snapshot.values, next_nodes=list(snapshot.next),
                          error=f"{type(err).__name__}: {err}", usage=_usage(callbacks))
            if on_event:
                on_event("error", (), node, err)
            raise GraphRunError(node, err, thread_id) from exc
        snapshot = await graph.aget_state(config)
    state = Channels.from_spec(spec, []).with_defaults(snapshot.values)
    status = "interrupted" if snapshot.next else "completed"
    path = record.finish(status, state=state, next_nodes=list(snapshot.next), usage=_usage(callbacks))
    return RunResult(record.run_id, thread_id, status, state, list(snapshot.next), path)


class StepLimitError(RuntimeError):
    """A run took more than the spec's `max_steps` supersteps."""


def _failed_node(exc: BaseException) -> str:
    if isinstance(exc, StateWriteError):
        return exc.node
    return "?"


def _usage(callbacks: list[Any] | None) -> dict[str, Any] | None:
    for cb in callbacks or ():
        to_dict = getattr(cb, "to_dict", None)
        if callable(to_dict):
            return to_dict()  # type: ignore[no-any-return]
    return None


def _dispatch(record: RunRecord, on_event: EventHandler | None, ns: tuple[str, ...], mode: str,
              chunk: Any) -> None:
    if mode == "tasks":
        if "input" in chunk:
            record.task_started(chunk["id"], chunk["name"], ns)
            if on_event:
                on_event("start", ns, chunk["name"], None)
        else:
            record.task_finished(chunk["id"], chunk.get("error"), chunk.get("result"))
    elif mode == "updates" and on_event:
        for node, update in (chunk or {}).items():
            on_event("update", ns, node, update)
    elif mode == "messages" and on_event:
        message, meta = chunk
        text = getattr(message, "content", "")
        if isinstance(text, str) and text:
            on_event("token", ns, meta.get("langgraph_node", "?"), text)


async def resume_thread(
    thread_id: str,
    *,
    updates: dict[str, Any] | None = None,
    spec: str | Path | None = None,
    checkpoint: str | None = None,
    runs_dir: Path = Path("runs"),
    registry: Registry | None = None,
    options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    on_event: EventHandler | None = None,
) -> RunResult:
    """Continue a thread from its last checkpoint (after an interrupt, a crash or a fix).

    `updates` are written into the state first (e.g. a reviewer's edits).
    """
    from graphwright.graphs._checkpoint import open_async_checkpointer

    found = find_thread_record(Path(runs_dir), thread_id)
    if spec is None:
        if found is None or not found.get("spec_path"):
            raise SpecError([SpecIssue(
                f"no run record for thread {thread_id!r} under {runs_dir}; pass --spec", "thread")])
        spec = found["spec_path"]
    if checkpoint is None and found is not None and found.get("checkpoint"):
        checkpoint = found["checkpoint"]
        if checkpoint is not None and "***" in checkpoint:
            raise SpecError([SpecIssue("the thread's checkpoint URL has a password; pass "
                                       "--checkpoint", "checkpoint")])
    loaded = load_spec(spec)
    inputs: dict[str, Any] | None = None
    async with open_async_checkpointer(
        checkpoint, default_path=default_checkpoint_path(Path(runs_dir))
    ) as saver:
        if await saver.aget_tuple({"configurable": {"thread_id": thread_id}}) is None:
            # killed before its first checkpoint: start over from the recorded inputs
            if found is None:
                raise SpecError([SpecIssue(f"thread {thread_id!r} has no checkpoint and no run "
                                           "record to start it again from", "thread")])
            inputs = {**found.get("inputs", {}), **(updates or {})}
            updates = None
    if updates:
        check_inputs(loaded, updates)
        async with open_async_checkpointer(
            checkpoint, default_path=default_checkpoint_path(Path(runs_dir))
        ) as saver:
            graph = compile_spec(loaded, registry=registry, checkpointer=saver, options=options)
            await graph.aupdate_state({"configurable": {"thread_id": thread_id}}, updates)
    return await run_spec(loaded, inputs, thread_id=thread_id, checkpoint=checkpoint,
                          runs_dir=runs_dir, registry=registry, options=options,
                          callbacks=callbacks, on_event=on_event, _resumed=True)
