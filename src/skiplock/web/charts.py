"""Server-side SVG geometry: trend lines and the workflow graph. Pure; templates draw the result.

Only numbers and ids leave this module; every text the SVG shows (task names) is written by the
templates, where autoescaping applies to it like to any other job data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skiplock.models import GraphNode

__all__ = ["Graph", "Trend", "layout_graph", "trend"]

GRAPH_LIMIT = 120  # nodes drawn; a bigger workflow is listed, not drawn
_NODE_W, _NODE_H, _COL_GAP, _ROW_GAP, _PAD = 170, 34, 60, 14, 10


@dataclass(frozen=True, slots=True)
class Trend:
    """Two lines over the same time axis, each scaled to its own maximum."""

    width: int
    height: int
    first: str  # "x,y x,y …" for <polyline points>
    second: str
    first_max: float
    second_max: float


def _line(values: Sequence[float], width: int, height: int) -> tuple[str, float]:
    top = max(values, default=0.0)
    if len(values) < 2:
        return "", top
    step = width / (len(values) - 1)
    scale = (height - 2) / top if top > 0 else 0.0
    points = " ".join(f"{i * step:.1f},{height - 1 - v * scale:.1f}" for i, v in enumerate(values))
    return points, top


def trend(first: Sequence[float], second: Sequence[float], width: int = 180, height: int = 36) -> Trend:
    """Polylines for two series (say backlog and completions per second), oldest point first."""
    a, a_max = _line(first, width, height)
    b, b_max = _line(second, width, height)
    return Trend(width, height, a, b, a_max, b_max)


@dataclass(frozen=True, slots=True)
class Box:
    id: int
    task: str
    state: str
    x: int
    y: int
    is_current: bool


@dataclass(frozen=True, slots=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    rule: str  # the child's on-failure rule for this parent


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    node_w: int
    node_h: int
    boxes: list[Box]
    edges: list[Edge]
    truncated: bool


def layout_graph(nodes: Sequence[GraphNode], current: int) -> Graph:
    """Columns by depth (a job sits right of all its parents), rows in id order within a column."""
    drawn = sorted(nodes, key=lambda n: n.id)[:GRAPH_LIMIT]
    known = {n.id: n for n in drawn}
    depth: dict[int, int] = {}

    def depth_of(node_id: int, seen: frozenset[int] = frozenset()) -> int:
        if node_id in depth:
            return depth[node_id]
        parents = [p for p in known[node_id].parents if p in known and p not in seen]
        value = 1 + max((depth_of(p, seen | {node_id}) for p in parents), default=-1)
        depth[node_id] = value
        return value

    columns: dict[int, list[GraphNode]] = {}
    for n in drawn:
        columns.setdefault(depth_of(n.id), []).append(n)
    where: dict[int, tuple[int, int]] = {}
    boxes = []
    for col, members in sorted(columns.items()):
        for row, n in enumerate(members):
            x = _PAD + col * (_NODE_W + _COL_GAP)
            y = _PAD + row * (_NODE_H + _ROW_GAP)
            where[n.id] = (x, y)
            boxes.append(Box(n.id, n.task, n.state.value, x, y, n.id == current))
    edges = []
    for n in drawn:
        for i, p in enumerate(n.parents):
            if p not in where:
                continue
            px, py = where[p]
            cx, cy = where[n.id]
            rule = n.on_failure[i] if i < len(n.on_failure) else ""
            edges.append(Edge(px + _NODE_W, py + _NODE_H // 2, cx, cy + _NODE_H // 2, rule))
    width = max((b.x for b in boxes), default=0) + _NODE_W + _PAD
    height = max((b.y for b in boxes), default=0) + _NODE_H + _PAD
    return Graph(width, height, _NODE_W, _NODE_H, boxes, edges, truncated=len(nodes) > len(drawn))
