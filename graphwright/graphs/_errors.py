"""Spec errors that say what was wrong and where (file, line, key path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpecIssue:
    message: str
    key: str = ""  # dotted key path, e.g. "nodes[2].with.model"
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}{key}: {self.message}"


class SpecError(Exception):
    """One or more problems in a graph spec, found before any node ran."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class GraphRunError(Exception):
    """A node raised during a run; the checkpoint keeps everything before it."""

    def __init__(self, node: str, exc: BaseException, thread_id: str | None = None) -> None:
        self.node, self.exc, self.thread_id = node, exc, thread_id
        hint = f"; fix it and run `graphwright resume {thread_id}`" if thread_id else ""
        super().__init__(f"node {node!r} failed: {type(exc).__name__}: {exc}{hint}")


class StateWriteError(Exception):
    """A node wrote a value its channel does not accept (type, channel, or checkpointability)."""

    def __init__(self, node: str, channel: str, problem: str) -> None:
        self.node, self.channel = node, channel
        super().__init__(f"node {node!r} wrote channel {channel!r}: {problem}")


def key_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def display_path(path: Path | str | None) -> str:
    if path is None:
        return "<spec>"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)
