"""Checkpoint backends on real SQLite files and a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphwright.graphs._checkpoint import (
    list_threads,
    open_async_checkpointer,
    open_checkpointer,
    parse_duration,
    prune,
    resolve_checkpoint,
)


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    payload: str


def _node(name: str) -> Any:
    def run(state: State) -> dict[str, Any]:
        return {"log": [name]}

    return run


def build(
    saver: BaseCheckpointSaver[Any], *, interrupt_before: list[str] | None = None
) -> CompiledStateGraph[Any]:
    """START -> a -> b -> c -> END; each node appends its name to `log`."""
    g = StateGraph(State)
    for name in ("a", "b", "c"):
        g.add_node(name, _node(name))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=saver, interrupt_before=interrupt_before or [])


def cfg(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


class Store:
    """One checkpoint location: the URL and default path handed to the API under test."""

    def __init__(self, backend: str, url: str | None, default_path: Path) -> None:
        self.backend = backend
        self.url = url
        self.default_path = default_path

    def open(self) -> Any:
        return open_checkpointer(self.url, default_path=self.default_path)

    def run(self, *thread_ids: str, payload: str = "", interrupt_before: list[str] | None = None) -> None:
        with self.open() as saver:
            graph = build(saver, interrupt_before=interrupt_before)
            for tid in thread_ids:
                graph.invoke(State(log=[], payload=payload), cfg(tid))

    def leftover_rows(self, thread_id: str) -> int:
        """Rows of any kind (checkpoints, writes, blobs) still stored for a thread."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.default_path) as conn:
                return sum(
                    conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = ?", (thread_id,)).fetchone()[0]
                    for t in ("checkpoints", "writes")
                )
        assert self.url is not None
        with psycopg.connect(self.url) as conn:
            return sum(
                conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = %s", (thread_id,)).fetchone()[0]  # type: ignore[index]
                for t in ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
            )


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    # The SQLite default path sits in directories that do not exist yet: opening must create them.
    default_path = tmp_path / "state" / "nested" / "checkpoints.db"
    if request.param == "sqlite":
        return Store("sqlite", None, default_path)
    return Store("postgres", request.getfixturevalue("pg_url"), default_path)


def test_list_threads_counts_and_order(store: Store) -> None:
    store.run("t1", "t2")
    store.run("t3", interrupt_before=["c"])
    store.run("t1")  # a second run on the same thread adds checkpoints to it

    threads = list_threads(store.url, default_path=store.default_path)
    assert [t.thread_id for t in threads] == ["t1", "t3", "t2"]  # most recently active first
    with store.open() as saver:
        for t in threads:
            stored = list(saver.list(cfg(t.thread_id)))
            assert t.checkpoints == len(stored)
            assert t.last_checkpoint_id == stored[0].config["configurable"]["checkpoint_id"]
            assert t.last_ts == datetime.fromisoformat(stored[0].checkpoint["ts"])
            assert t.first_ts == datetime.fromisoformat(stored[-1].checkpoint["ts"])
            assert t.first_ts <= t.last_ts
    by_id = {t.thread_id: t for t in threads}
    # input checkpoint + one per step: -1, 0 (START), a, b, c
    assert by_id["t2"].checkpoints == 5
    assert by_id["t1"].checkpoints == 10
    assert by_id["t3"].checkpoints == 4
    assert by_id["t3"].next == ["c"]
    assert by_id["t2"].next == []
    assert by_id["t2"].step == 3


def test_prune_keep_last(store: Store) -> None:
    store.run("old1", "old2", "new1", "new2")
    result = prune(store.url, default_path=store.default_path, keep_last=2)
    assert result.thread_ids == ["old1", "old2"]
    assert result.threads_deleted == 2
    assert result.checkpoints_deleted == 10
    assert [t.thread_id for t in list_threads(store.url, default_path=store.default_path)] == ["new2", "new1"]
    # delete_thread took the writes (and, on PostgreSQL, the blobs) along.
    assert store.leftover_rows("old1") == 0
    assert store.leftover_rows("new1") > 0
    with store.open() as saver:
        assert saver.get_tuple(cfg("old1")) is None
        assert build(saver).get_state(cfg("new1")).values["log"] == ["a", "b", "c"]


def test_prune_dry_run_and_noop(store: Store) -> None:
    store.run("x", "y")
    assert prune(store.url, default_path=store.default_path).threads_deleted == 0
    dry = prune(store.url, default_path=store.default_path, keep_last=0, dry_run=True)
    assert (dry.threads_deleted, dry.checkpoints_deleted, dry.dry_run) == (2, 10, True)
    assert len(list_threads(store.url, default_path=store.default_path)) == 2


def test_prune_older_than_with_backdated_checkpoint(store: Store) -> None:
    """A thread whose last checkpoint carries a timestamp 30 days old goes; fresh ones stay."""
    store.run("fresh")
    with store.open() as saver:
        stale = empty_checkpoint()
        stale["ts"] = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        saver.put(
            {"configurable": {"thread_id": "stale", "checkpoint_ns": ""}},
            stale,
            {"source": "input", "step": -1},
            {},
        )
    # The stale thread's age shows in the listing.
    ages = {t.thread_id: t.last_ts for t in list_threads(store.url, default_path=store.default_path)}
    assert datetime.now(UTC) - ages["stale"] > timedelta(days=29)

    result = prune(store.url, default_path=store.default_path, older_than=parse_duration("7d"))
    assert result.thread_ids == ["stale"]
    assert result.checkpoints_deleted == 1
    assert [t.thread_id for t in list_threads(store.url, default_path=store.default_path)] == ["fresh"]


def test_prune_older_than_uses_last_checkpoint(store: Store) -> None:
    """A thread is judged by its LAST checkpoint: resuming an old thread keeps it alive."""
    store.run("early")
    store.run("revived", interrupt_before=["c"])
    store.run("late")
    threads = {t.thread_id: t for t in list_threads(store.url, default_path=store.default_path)}
    cutoff = threads["late"].first_ts  # after every checkpoint of "early" and "revived" so far
    args: dict[str, Any] = {"older_than": timedelta(hours=1), "now": cutoff + timedelta(hours=1)}
    dry = prune(store.url, default_path=store.default_path, dry_run=True, **args)
    assert dry.thread_ids == ["early", "revived"]
    with store.open() as saver:
        build(saver, interrupt_before=["c"]).invoke(None, cfg("revived"))  # resumed after the cutoff
    result = prune(store.url, default_path=store.default_path, **args)
    assert result.thread_ids == ["early"]
    assert {t.thread_id for t in list_threads(store.url, default_path=store.default_path)} == {
        "revived",
        "late",
    }


def test_resume_from_fresh_saver(store: Store) -> None:
    store.run("r", interrupt_before=["c"])
    # A new saver instance (as in a new process) sees the interrupted run and continues it.
    with store.open() as saver:
        graph = build(saver, interrupt_before=["c"])
        assert graph.get_state(cfg("r")).next == ("c",)
        final = graph.invoke(None, cfg("r"))
    assert final["log"] == ["a", "b", "c"]  # a and b did not run again


def test_async_saver_and_resume(store: Store) -> None:
    async def first_leg() -> list[str]:
        async with open_async_checkpointer(store.url, default_path=store.default_path) as saver:
            graph = build(saver, interrupt_before=["b"])
            return [next(iter(ev)) async for ev in graph.astream(State(log=[], payload=""), cfg("async"))]

    async def second_leg() -> dict[str, Any]:
        async with open_async_checkpointer(store.url, default_path=store.default_path) as saver:
            return await build(saver, interrupt_before=["b"]).ainvoke(None, cfg("async"))

    events = asyncio.run(first_leg())
    assert events[0] == "a"
    assert asyncio.run(second_leg())["log"] == ["a", "b", "c"]
    # Async and sync savers share one storage format.
    [info] = list_threads(store.url, default_path=store.default_path)
    assert info.thread_id == "async" and info.next == []


def _disk_size(db: Path) -> int:
    # The WAL file only exists while a connection is open; count it when it is there.
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def test_sqlite_prune_shrinks_file(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    store = Store("sqlite", f"sqlite:///{db}", db)  # sqlite:/// + absolute path = 4 slashes
    store.run(*(f"t{i}" for i in range(8)), payload="x" * 200_000)
    before = _disk_size(db)
    prune(store.url, default_path=tmp_path / "unused.db", keep_last=1)
    after = _disk_size(db)
    assert after < before / 4
    assert not (tmp_path / "unused.db").exists()


def test_list_threads_does_not_create_database(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "checkpoints.db"
    assert list_threads(None, default_path=missing) == []
    assert prune(None, default_path=missing, keep_last=0).threads_deleted == 0
    assert not missing.exists()


def test_resolve_checkpoint_forms(tmp_path: Path) -> None:
    default = tmp_path / "d.db"
    assert resolve_checkpoint(None, default_path=default).path == default
    assert resolve_checkpoint("", default_path=default).path == default
    assert resolve_checkpoint("runs/c.db", default_path=default).path == Path("runs/c.db")
    assert resolve_checkpoint("sqlite:///runs/c.db", default_path=default).path == Path("runs/c.db")
    assert resolve_checkpoint("sqlite:////abs/c.db", default_path=default).path == Path("/abs/c.db")
    for url in ("postgresql://u@h:5432/db", "postgres://u@h/db"):
        target = resolve_checkpoint(url, default_path=default)
        assert (target.backend, target.url) == ("postgres", url)
    assert resolve_checkpoint("postgresql://u:secret@h/db", default_path=default).describe() == (
        "postgresql://u:***@h/db"
    )


def test_unknown_scheme_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError) as err,
        open_checkpointer("mysql://u:pw@h/db", default_path=tmp_path / "d.db"),
    ):
        pass
    message = str(err.value)
    assert "mysql://u:***@h/db" in message and "pw" not in message
    assert "sqlite:///" in message and "postgresql://" in message
    with pytest.raises(ValueError, match="SQLite checkpoint URL"):
        resolve_checkpoint("sqlite://host/x.db", default_path=tmp_path / "d.db")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        (" 1D ", timedelta(days=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "1.5h", "7 days", "3y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_prune_rejects_negative_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_last"):
        prune(None, default_path=tmp_path / "d.db", keep_last=-1)
    with pytest.raises(ValueError, match="older_than"):
        prune(None, default_path=tmp_path / "d.db", older_than=timedelta(seconds=-1))
