"""The run record: `runs/<run-id>/record.json`, one per run or resume."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SECRET_NAME = re.compile(r"(api[_-]?key|secret|token|password|passwd|authorization)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def redact_url(url: str | None) -> str | None:
    return None if url is None else _URL_PASSWORD.sub(r"\1***\3", url)


def jsonable(value: Any, key: str = "") -> Any:
    """JSON-safe copy of a state value; secret-looking keys are redacted."""
    if key and _SECRET_NAME.search(key) and isinstance(value, str):
        return "***"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models, langchain messages
        try:
            return jsonable(dump(mode="json"))
        except Exception:
            pass
    return repr(value)


class RunRecord:
    """Collects what a run did and writes it as JSON."""

    def __init__(self, runs_dir: Path, *, spec: Any, thread_id: str, inputs: dict[str, Any],
                 checkpoint: str | None, resumed: bool = False) -> None:
        self.run_id = new_run_id()
        self.dir = Path(runs_dir) / self.run_id
        self.started = time.time()
        self.data: dict[str, Any] = {
            "run_id": self.run_id,
            "thread_id": thread_id,
            "graph": spec.name,
            "spec_path": str(spec.source_path) if spec.source_path else None,
            "spec_sha256": spec.sha256,
            "checkpoint": redact_url(checkpoint),
            "resumed": resumed,
            "inputs": jsonable(inputs),
            "started_at": datetime.now(UTC).isoformat(),
            "status": "running",
            "nodes": [],
            "model_calls": [],
        }
        self._open: dict[str, dict[str, Any]] = {}

    def write(self) -> Path:
        """Write the record as it stands: at the start (so a killed run can be resumed
        by thread id) and again when the run ends."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "record.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=repr), encoding="utf-8")
        tmp.replace(path)
        return path

    def task_started(self, task_id: str, name: str, namespace: tuple[str, ...]) -> None:
        self._open[task_id] = {
            "node": name,
            "namespace": "/".join(namespace),
            "start": time.time(),
        }

    def task_finished(self, task_id: str, error: BaseException | None, result: Any) -> dict[str, Any]:
        entry = self._open.pop(task_id, None) or {"node": "?", "namespace": "", "start": time.time()}
        entry["end"] = time.time()
        entry["duration_s"] = round(entry["end"] - entry["start"], 6)
        entry["update"] = jsonable(result)
        if error is not None:
            entry["error"] = f"{type(error).__name__}: {error}"
        self.data["nodes"].append(entry)
        return entry

    def finish(self, status: str, *, state: dict[str, Any], next_nodes: list[str],
               error: str | None = None, usage: dict[str, Any] | None = None) -> Path:
        self.data.update(
            status=status,
            ended_at=datetime.now(UTC).isoformat(),
            duration_s=round(time.time() - self.started, 6),
            next=next_nodes,
            error=error,
            state=jsonable(state),
        )
        if usage:
            self.data["model_calls"] = usage.get("calls", [])
            self.data["usage"] = {k: v for k, v in usage.items() if k != "calls"}
        return self.write()


def find_thread_record(runs_dir: Path, thread_id: str) -> dict[str, Any] | None:
    """The newest record of `thread_id`, to learn its spec and checkpoint on resume."""
    best: tuple[str, dict[str, Any]] | None = None
    for path in Path(runs_dir).glob("*/record.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("thread_id") == thread_id and (best is None or data["run_id"] > best[0]):
            best = (data["run_id"], data)
    return best[1] if best else None
