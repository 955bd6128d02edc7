"""GraphSpec: the pydantic models of a graph file, and loading them with line numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphwright.graphs._errors import SpecError, SpecIssue, display_path, key_path

START, END = "START", "END"
Reducer = Literal["replace", "append", "merge", "add", "messages"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ChannelSpec(_Strict):
    """One state channel: its type, how concurrent writes combine, its default."""

    type: str = "any"
    reducer: Reducer | None = None
    default: Any = None
    description: str = ""

    @model_validator(mode="after")
    def _messages_reducer(self) -> ChannelSpec:
        if self.type == "messages" and self.reducer is None:
            self.reducer = "messages"
        return self


class NodeSpec(_Strict):
    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    kind: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    writes: list[str] | None = Field(
        default=None, description="channels this node writes (for fan-in checks)"
    )
    description: str = ""


class WhenCase(_Strict):
    if_: str | None = Field(default=None, alias="if")
    else_: bool = Field(default=False, alias="else")
    to: str

    @model_validator(mode="after")
    def _one_of(self) -> WhenCase:
        if (self.if_ is None) == (not self.else_):
            raise ValueError("a case has either `if: <expression>` or `else: true`")
        return self


class FanOut(_Strict):
    """Parallel fan-out: one `to` task per item of the list channel `over`."""

    over: str
    to: str
    as_: str = Field(default="item", alias="as")


class EdgeSpec(_Strict):
    from_: str | list[str] = Field(alias="from")
    to: str | list[str] | None = None
    when: list[WhenCase] | None = None
    map: FanOut | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EdgeSpec:
        given = [k for k in ("to", "when", "map") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an edge needs exactly one of to/when/map, got {given or 'none'}")
        return self

    def sources(self) -> list[str]:
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)

    def targets(self) -> list[str]:
        if self.when is not None:
            return [c.to for c in self.when]
        if self.map is not None:
            return [self.map.to]
        return [self.to] if isinstance(self.to, str) else list(self.to or [])


class GraphSpec(_Strict):
    name: str = "graph"
    description: str = ""
    version: str = "1"
    state: dict[str, ChannelSpec] = Field(default_factory=dict)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    max_steps: int = Field(default=100, ge=1)
    interrupt_before: list[str] = Field(default_factory=list)
    interrupt_after: list[str] = Field(default_factory=list)

    # set by load_spec, not part of the file
    source_path: Path | None = Field(default=None, exclude=True)
    source_lines: dict[str, int] = Field(default_factory=dict, exclude=True)
    source_text: str = Field(default="", exclude=True)

    def node(self, node_id: str) -> NodeSpec:
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def sha256(self) -> str:
        text = self.source_text or json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def issue(self, message: str, loc: tuple[str | int, ...] = ()) -> SpecIssue:
        """A SpecIssue pointing at `loc` in this spec's file (nearest known line)."""
        line = None
        for cut in range(len(loc), -1, -1):
            k = key_path(loc[:cut])
            if k in self.source_lines:
                line = self.source_lines[k]
                break
        return SpecIssue(message, key_path(loc), display_path(self.source_path), line)


def _line_map(node: yaml.Node, loc: tuple[str | int, ...], out: dict[str, int]) -> None:
    out.setdefault(key_path(loc), node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*loc, str(k.value))
            out[key_path(sub)] = k.start_mark.line + 1
            _line_map(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, (*loc, i), out)


def parse_spec(text: str, path: Path | str | None = None) -> GraphSpec:
    """Parse YAML/JSON text into a GraphSpec, or raise SpecError with file:line."""
    where = display_path(path)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([SpecIssue(f"YAML syntax error: {problem}", "", where, line)]) from None
    if not isinstance(data, dict):
        raise SpecError([SpecIssue("a graph spec is a mapping with `nodes:`", "", where, 1)])
    lines: dict[str, int] = {}
    if root is not None:
        _line_map(root, (), lines)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        shell = GraphSpec.model_construct(source_path=Path(path) if path else None, source_lines=lines)
        issues = []
        for err in exc.errors():
            loc = tuple(_alias(p) for p in err["loc"])
            issues.append(shell.issue(err["msg"], loc))
        raise SpecError(issues) from None
    spec.source_path = Path(path).resolve() if path else None
    spec.source_lines = lines
    spec.source_text = text
    return spec


def _alias(part: str | int) -> str | int:
    return {"with_": "with", "from_": "from", "if_": "if", "else_": "else", "as_": "as"}.get(
        part, part
    ) if isinstance(part, str) else part


def load_spec(path: Path | str) -> GraphSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read spec: {exc.strerror}", "", str(p))]) from None
    return parse_spec(text, p)
