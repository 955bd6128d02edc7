"""Drawing a spec: mermaid text, or a PNG made with Pillow, offline.

Drawn from the spec rather than from langgraph's `get_graph()`, which cannot see
the targets of conditional and fan-out edges; here every edge keeps its `if:`
label. The PNG layout is layered: a node sits one row below its shallowest
predecessor; conditional edges are orange, fan-out edges dashed-blue."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphwright.graphs._spec import END, START, GraphSpec


@dataclass
class Edge:
    source: str
    target: str
    conditional: bool = False
    data: str | None = None


@dataclass
class Drawing:
    nodes: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)


def spec_drawing(spec: GraphSpec) -> Drawing:
    d = Drawing(nodes=["__start__", *(n.id for n in spec.nodes), "__end__"])
    d.kinds = {n.id: n.kind for n in spec.nodes}
    name = {START: "__start__", END: "__end__"}
    for edge in spec.edges:
        for src in edge.sources():
            s = name.get(src, src)
            if edge.when is not None:
                for case in edge.when:
                    d.edges.append(Edge(s, name.get(case.to, case.to), True,
                                        case.if_ if case.if_ is not None else "else"))
            elif edge.map is not None:
                d.edges.append(Edge(s, edge.map.to, True, f"each {edge.map.over}"))
            else:
                d.edges.extend(Edge(s, name.get(t, t)) for t in edge.targets())
    return d


def to_mermaid(spec: GraphSpec) -> str:
    d = spec_drawing(spec)
    lines = ["graph TD;", "\t__start__([START])", "\t__end__([END])"]
    lines += [f"\t{n}[\"{n}<br/><i>{d.kinds[n]}</i>\"]" for n in d.nodes if n in d.kinds]
    for e in d.edges:
        if e.data:
            label = e.data.replace('"', "'").replace("|", "/")
            lines.append(f"\t{e.source} -.->|\"{label}\"| {e.target};")
        else:
            lines.append(f"\t{e.source} --> {e.target};")
    return "\n".join(lines) + "\n"

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 40, 40, 60, 30


def layout(graph: Any) -> dict[str, tuple[int, int]]:
    """node id -> (row, column), rows by breadth-first depth from the start."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for e in graph.edges:
        succ.setdefault(e.source, []).append(e.target)
    start = next((n for n in graph.nodes if n == "__start__"), next(iter(graph.nodes)))
    depth = {start: 0}
    queue = deque([start])
    while queue:
        n = queue.popleft()
        for m in succ.get(n, []):
            if m not in depth:
                depth[m] = depth[n] + 1
                queue.append(m)
    for n in graph.nodes:  # unreachable ones go at the bottom
        depth.setdefault(n, max(depth.values(), default=0) + 1)
    if "__end__" in depth:  # the end always sits alone on the last row
        depth["__end__"] = max(d for k, d in depth.items() if k != "__end__") + 1
    rows: dict[int, list[str]] = {}
    for n in graph.nodes:
        rows.setdefault(depth[n], []).append(n)
    return {n: (r, c) for r, names in rows.items() for c, n in enumerate(names)}


def draw_png(spec: GraphSpec, path: Path) -> None:
    from PIL import Image, ImageDraw

    graph = spec_drawing(spec)
    pos = layout(graph)
    n_rows = max(r for r, _ in pos.values()) + 1
    n_cols = max(c for _, c in pos.values()) + 1
    width = 2 * MARGIN + n_cols * BOX_W + (n_cols - 1) * GAP_X + 160  # room for side routes
    height = 2 * MARGIN + n_rows * BOX_H + (n_rows - 1) * GAP_Y
    widths = {r: sum(1 for rr, _ in pos.values() if rr == r) for r in range(n_rows)}

    def box(n: str) -> tuple[int, int, int, int]:
        r, c = pos[n]
        row_w = widths[r] * BOX_W + (widths[r] - 1) * GAP_X
        x0 = (width - 160 - row_w) // 2 + c * (BOX_W + GAP_X)
        y0 = MARGIN + r * (BOX_H + GAP_Y)
        return x0, y0, x0 + BOX_W, y0 + BOX_H

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for e in graph.edges:
        sx0, sy0, sx1, sy1 = box(e.source)
        tx0, ty0, tx1, ty1 = box(e.target)
        start = ((sx0 + sx1) // 2, sy1)
        end = ((tx0 + tx1) // 2, ty0) if ty0 > sy1 else ((tx0 + tx1) // 2, ty1)
        colour = ("#2f7fd9" if (e.data or "").startswith("each ") else "#d9822b") \
            if e.conditional else "#444444"
        rows_apart = abs(pos[e.target][0] - pos[e.source][0])
        if rows_apart > 1 or rows_apart == 0:  # route around the boxes in between
            side = max(sx1, tx1) + 18 + 6 * (len(e.source) % 4)
            mid_s, mid_t = (sx1, (sy0 + sy1) // 2), (tx1, (ty0 + ty1) // 2)
            draw.line([mid_s, (side, mid_s[1]), (side, mid_t[1]), mid_t], fill=colour, width=2)
            end = mid_t
            draw.polygon([end, (end[0] + 9, end[1] - 5), (end[0] + 9, end[1] + 5)], fill=colour)
            if e.data:
                draw.text((side + 4, (mid_s[1] + mid_t[1]) // 2), str(e.data)[:24], fill=colour)
            continue
        draw.line([start, end], fill=colour, width=2)
        ex, ey = end
        tip = -1 if end[1] == ty0 else 1
        draw.polygon([(ex, ey), (ex - 5, ey + 9 * tip), (ex + 5, ey + 9 * tip)], fill=colour)
        if e.data:
            mx, my = (start[0] + end[0]) // 2, (start[1] + end[1]) // 2
            draw.text((mx + 4, my - 6), str(e.data)[:24], fill=colour)
    for n in graph.nodes:
        x0, y0, x1, y1 = box(n)
        special = n in ("__start__", "__end__")
        draw.rounded_rectangle((x0, y0, x1, y1), radius=12 if special else 4,
                               fill="#eef3fb" if not special else "#f4f4f4", outline="#2f5597",
                               width=2)
        label = {"__start__": "START", "__end__": "END"}.get(n, n)[:22]
        tw = draw.textlength(label)
        draw.text((x0 + (BOX_W - tw) / 2, y0 + BOX_H / 2 - 6), label, fill="black")
    img.save(path, format="PNG")
