"""Checkpoint backends: where a run's state is saved so it can be resumed, listed and pruned.

A checkpoint location is given as a URL:

- nothing (`None`): the SQLite file `default_path`;
- `sqlite:///relative/file.db`, `sqlite:////absolute/file.db` (SQLAlchemy's convention), or a plain
  file path: a SQLite file (`langgraph-checkpoint-sqlite`);
- `postgresql://...` or `postgres://...`: PostgreSQL (`langgraph-checkpoint-postgres`).

Listing threads reads the savers' tables with one aggregate query instead of the savers' `list()`:
`list()` loads and deserializes every checkpoint with all its channel values, while a thread listing
only needs counts, ids and two timestamps per thread. Deleting goes through the savers'
`delete_thread`, so their writes and blobs go with the checkpoints.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CheckpointTarget",
    "PruneResult",
    "ThreadInfo",
    "list_threads",
    "open_async_checkpointer",
    "open_checkpointer",
    "parse_duration",
    "prune",
    "resolve_checkpoint",
]

ACCEPTED_FORMS = (
    "a file path, 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "'postgresql://user@host:port/dbname' or 'postgres://...'"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class CheckpointTarget(BaseModel):
    """A resolved checkpoint location."""

    model_config = ConfigDict(frozen=True)

    backend: Literal["sqlite", "postgres"]
    path: Path | None = None  # sqlite only
    url: str | None = None  # postgres only

    def describe(self) -> str:
        return f"sqlite:{self.path}" if self.backend == "sqlite" else _redact(self.url or "")


class ThreadInfo(BaseModel):
    """One thread (one run, possibly resumed several times) in a checkpoint store."""

    thread_id: str
    checkpoints: int = Field(description="checkpoints stored for the thread, subgraphs included")
    first_ts: datetime
    last_ts: datetime
    last_checkpoint_id: str
    step: int | None = Field(default=None, description="step of the last checkpoint")
    next: list[str] = Field(
        default_factory=list,
        description="nodes the last checkpoint schedules next; empty when the run finished",
    )


class PruneResult(BaseModel):
    threads_deleted: int = 0
    checkpoints_deleted: int = 0
    thread_ids: list[str] = Field(default_factory=list)
    dry_run: bool = False


def resolve_checkpoint(url: str | None, *, default_path: Path) -> CheckpointTarget:
    """Parse a checkpoint URL (see the module doc); ValueError for anything else."""
    if url is None or url.strip() == "":
        return CheckpointTarget(backend="sqlite", path=Path(default_path))
    m = _SCHEME.match(url)
    if m is None:
        return CheckpointTarget(backend="sqlite", path=Path(url))
    scheme = m.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        return CheckpointTarget(backend="postgres", url=url)
    if scheme == "sqlite":
        rest = url[m.end() :]
        # sqlite:///x.db -> "/x.db" after the "//" authority; the one leading "/" separates it.
        if not rest.startswith("/") or rest == "/":
            raise ValueError(
                f"invalid SQLite checkpoint URL {url!r}: expected 'sqlite:///relative/path.db' or "
                "'sqlite:////absolute/path.db'"
            )
        return CheckpointTarget(backend="sqlite", path=Path(rest[1:]))
    raise ValueError(
        f"unsupported checkpoint URL {_redact(url)!r} (scheme {scheme!r}); accepted forms: {ACCEPTED_FORMS}"
    )


def _redact(url: str) -> str:
    # Never print a password from a connection URL.
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _sqlite_path(target: CheckpointTarget) -> str:
    assert target.path is not None
    if str(target.path) != ":memory:":
        target.path.parent.mkdir(parents=True, exist_ok=True)
    return str(target.path)


# -- opening savers ----------------------------------------------------------------------------


def open_checkpointer(
    url: str | None, *, default_path: Path
) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
    """A ready (tables created) synchronous saver for `url`; closed on exit."""
    return _open_sync(resolve_checkpoint(url, default_path=default_path))


@contextmanager
def _open_sync(target: CheckpointTarget) -> Iterator[BaseCheckpointSaver[Any]]:
    if target.backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        # check_same_thread=False: langgraph may call the saver from worker threads; the saver
        # serializes access with its own lock.
        conn = sqlite3.connect(_sqlite_path(target), check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
    else:
        from langgraph.checkpoint.postgres import PostgresSaver

        assert target.url is not None
        # from_conn_string gives the autocommit, dict_row connection the saver requires.
        with PostgresSaver.from_conn_string(target.url) as pg_saver:
            pg_saver.setup()
            yield pg_saver


def open_async_checkpointer(
    url: str | None, *, default_path: Path
) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
    """The async counterpart of `open_checkpointer`, for graphs run with `astream`/`ainvoke`."""
    return _open_async(resolve_checkpoint(url, default_path=default_path))


@asynccontextmanager
async def _open_async(target: CheckpointTarget) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if target.backend == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(_sqlite_path(target)) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert target.url is not None
        async with AsyncPostgresSaver.from_conn_string(target.url) as pg_saver:
            await pg_saver.setup()
            yield pg_saver


# -- listing -----------------------------------------------------------------------------------

# Per thread: all its checkpoints counted (subgraph namespaces included, as delete_thread removes
# them too); first/last taken from the root namespace, whose ids are time-ordered (uuid6).
_SQLITE_THREADS = """
SELECT thread_id, COUNT(*) AS n,
       COALESCE(MIN(CASE WHEN checkpoint_ns = '' THEN checkpoint_id END), MIN(checkpoint_id)),
       COALESCE(MAX(CASE WHEN checkpoint_ns = '' THEN checkpoint_id END), MAX(checkpoint_id))
FROM checkpoints GROUP BY thread_id
"""
_SQLITE_ONE = """
SELECT type, checkpoint, metadata FROM checkpoints
WHERE thread_id = ? AND checkpoint_id = ? ORDER BY checkpoint_ns LIMIT 1
"""
# PostgreSQL keeps the checkpoint (minus channel values) as JSONB, so one query does it all.
_PG_THREADS = """
WITH agg AS (
  SELECT thread_id, count(*) AS n,
         coalesce(min(checkpoint_id) FILTER (WHERE checkpoint_ns = ''), min(checkpoint_id)) AS first_id,
         coalesce(max(checkpoint_id) FILTER (WHERE checkpoint_ns = ''), max(checkpoint_id)) AS last_id
  FROM checkpoints GROUP BY thread_id
)
SELECT a.thread_id, a.n, a.first_id, a.last_id,
       f.checkpoint ->> 'ts' AS first_ts, l.checkpoint ->> 'ts' AS last_ts,
       l.checkpoint -> 'updated_channels' AS updated_channels, l.metadata -> 'step' AS step
FROM agg a
JOIN LATERAL (SELECT checkpoint FROM checkpoints c
              WHERE c.thread_id = a.thread_id AND c.checkpoint_id = a.first_id
              ORDER BY c.checkpoint_ns LIMIT 1) f ON true
JOIN LATERAL (SELECT checkpoint, metadata FROM checkpoints c
              WHERE c.thread_id = a.thread_id AND c.checkpoint_id = a.last_id
              ORDER BY c.checkpoint_ns LIMIT 1) l ON true
"""


def _ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _next_nodes(updated_channels: Sequence[str] | None) -> list[str]:
    # LangGraph triggers a node by writing its `branch:to:<node>` channel; the channels a
    # checkpoint updated therefore name the nodes that run next. Cheap, and exact for graphs
    # built by StateGraph; other triggers (e.g. Send) are not shown.
    prefix = "branch:to:"
    return sorted(c[len(prefix) :] for c in updated_channels or () if c.startswith(prefix))


def _list_sqlite(saver: Any) -> list[ThreadInfo]:
    infos: list[ThreadInfo] = []
    with saver.cursor(transaction=False) as cur:
        rows = cur.execute(_SQLITE_THREADS).fetchall()
        for thread_id, n, first_id, last_id in rows:
            ftype, fblob, _ = cur.execute(_SQLITE_ONE, (thread_id, first_id)).fetchone()
            ltype, lblob, lmeta = cur.execute(_SQLITE_ONE, (thread_id, last_id)).fetchone()
            first = saver.serde.loads_typed((ftype, fblob))
            last = first if first_id == last_id else saver.serde.loads_typed((ltype, lblob))
            meta = json.loads(lmeta) if lmeta else {}
            infos.append(
                ThreadInfo(
                    thread_id=thread_id,
                    checkpoints=n,
                    first_ts=_ts(first["ts"]),
                    last_ts=_ts(last["ts"]),
                    last_checkpoint_id=last_id,
                    step=meta.get("step"),
                    next=_next_nodes(last.get("updated_channels")),
                )
            )
    return infos


def _list_postgres(saver: Any) -> list[ThreadInfo]:
    # The saver's own connection (opened by _open_sync: a psycopg Connection with dict rows).
    with saver.lock, saver.conn.cursor() as cur:
        rows = cur.execute(_PG_THREADS).fetchall()
    return [
        ThreadInfo(
            thread_id=r["thread_id"],
            checkpoints=r["n"],
            first_ts=_ts(r["first_ts"]),
            last_ts=_ts(r["last_ts"]),
            last_checkpoint_id=r["last_id"],
            step=r["step"],
            next=_next_nodes(r["updated_channels"]),
        )
        for r in rows
    ]


def _sorted(infos: list[ThreadInfo]) -> list[ThreadInfo]:
    # Most recently active first.
    return sorted(infos, key=lambda t: (t.last_ts, t.last_checkpoint_id), reverse=True)


def list_threads(url: str | None, *, default_path: Path) -> list[ThreadInfo]:
    """All threads in the store, most recently active first."""
    target = resolve_checkpoint(url, default_path=default_path)
    if target.backend == "sqlite" and target.path is not None and not target.path.exists():
        return []  # listing must not create the default database as a side effect
    with _open_sync(target) as saver:
        return _sorted(_list_sqlite(saver) if target.backend == "sqlite" else _list_postgres(saver))


# -- pruning -----------------------------------------------------------------------------------


def prune(
    url: str | None,
    *,
    default_path: Path,
    older_than: timedelta | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete whole threads: those whose last checkpoint is older than `older_than`, and all but
    the `keep_last` most recently active. With both, a thread goes if either rule selects it.
    With neither, nothing is deleted. SQLite files are vacuumed so that they actually shrink."""
    if older_than is not None and older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    if keep_last is not None and keep_last < 0:
        raise ValueError("keep_last must be >= 0")
    target = resolve_checkpoint(url, default_path=default_path)
    if older_than is None and keep_last is None:
        return PruneResult(dry_run=dry_run)
    if target.backend == "sqlite" and target.path is not None and not target.path.exists():
        return PruneResult(dry_run=dry_run)
    with _open_sync(target) as saver:
        infos = _sorted(_list_sqlite(saver) if target.backend == "sqlite" else _list_postgres(saver))
        doomed: dict[str, ThreadInfo] = {}
        if keep_last is not None:
            doomed.update((t.thread_id, t) for t in infos[keep_last:])
        if older_than is not None:
            cutoff = (now or datetime.now(UTC)) - older_than
            doomed.update((t.thread_id, t) for t in infos if t.last_ts < cutoff)
        result = PruneResult(
            threads_deleted=len(doomed),
            checkpoints_deleted=sum(t.checkpoints for t in doomed.values()),
            thread_ids=sorted(doomed),
            dry_run=dry_run,
        )
        if dry_run or not doomed:
            return result
        for thread_id in doomed:
            saver.delete_thread(thread_id)
        if target.backend == "sqlite":
            _vacuum(saver)
    return result


def _vacuum(saver: Any) -> None:
    # VACUUM rebuilds the file without the freed pages; in WAL mode the rebuilt pages sit in the
    # WAL until a checkpoint, so TRUNCATE-checkpoint it to shrink both files now.
    with saver.lock:
        saver.conn.commit()
        saver.conn.execute("VACUUM")
        saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- durations -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '12h', '7d', '2w' -> timedelta."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number and a unit s, m, h, d or w "
            "(e.g. '90s', '30m', '12h', '7d', '2w')"
        )
    return timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
