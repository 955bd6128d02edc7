"""A response cache in one SQLite file, for deterministic calls only."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict
from langchain_core.outputs import ChatGeneration, ChatResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    generations TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(provider: str, llm_string: str, messages: list[BaseMessage]) -> str:
    """Hash of provider, model + sampling parameters + tools (`llm_string`) and messages.

    Message ids are dropped: they are fresh per run and say nothing about content.
    """
    normalized = [m.model_copy(update={"id": None}) for m in messages]
    payload = json.dumps(
        {"provider": provider, "llm": llm_string, "messages": messages_to_dict(normalized)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """Maps a cache key to the generations of one call.

    Only hashes are stored as keys, so no prompt text or parameter (an API key
    included) is readable from the key column.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection shared across threads, serialised by the lock: agent
        # nodes run in threads and in the event loop.
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def get(self, key: str) -> ChatResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT generations FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        stored: list[dict[str, Any]] = json.loads(row[0])
        messages = messages_from_dict([g["message"] for g in stored])
        gens = [
            ChatGeneration(message=m, generation_info=g.get("info") or None)
            for m, g in zip(messages, stored, strict=True)
        ]
        return ChatResult(generations=gens)

    def put(self, key: str, result: ChatResult) -> None:
        stored = [
            {"message": messages_to_dict([g.message])[0], "info": g.generation_info}
            for g in result.generations
        ]
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, generations, created) VALUES (?, ?, ?)",
                (key, json.dumps(stored, default=str), time.time()),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


_open: dict[Path, ResponseCache] = {}
_open_lock = threading.Lock()


def open_cache(path: str | Path) -> ResponseCache:
    """One `ResponseCache` per file per process, shared by every model using it."""
    p = Path(path).resolve()
    with _open_lock:
        cache = _open.get(p)
        if cache is None:
            cache = _open[p] = ResponseCache(p)
        return cache
