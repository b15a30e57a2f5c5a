"""A routing graph in, Mermaid flowchart text out: routes -> groups -> targets, labelled edges."""

from __future__ import annotations

import re

from engine.graph import Group, Node, RoutingGraph, Target
from engine.values import format_duration as fd

__all__ = ["to_mermaid"]


def _id(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(graph: RoutingGraph) -> str:
    """Deterministic Mermaid ``flowchart LR`` of the graph (nothing secret in it)."""
    lines = ["flowchart LR"]
    nodes: dict[str, str] = {}
    edges: list[str] = []

    def node(n: Node) -> str:
        if isinstance(n, Target):
            nid = _id("t_", n.key)
            nodes.setdefault(nid, f'{nid}["{_label(n.key)}"]')
            return nid
        nid = _id("g_", n.name)
        if nid not in nodes:
            extra = f" after {fd(n.hedge_after)}" if n.hedge_after is not None else ""
            nodes[nid] = f'{nid}{{{{"{_label(n.name)}<br/>{n.strategy}{extra}"}}}}'
            for i, m in enumerate(n.members, 1):
                label = _edge_label(n, i, m.weight)
                edges.append(f"  {nid} -->|{label}| {node(m.node)}")
        return nid

    for r in graph.routes:
        rid = f"r{r.index}"
        nodes[rid] = f'{rid}(["#{r.index} {_label(r.match.describe())}"])'
        edges.append(f"  {rid} --> {node(r.to)}")
    lines += [f"  {text}" for text in nodes.values()]
    lines += edges
    return "\n".join(lines) + "\n"


def _edge_label(group: Group, position: int, weight: float) -> str:
    if group.strategy == "weighted":
        return f"w={weight:g}"
    if group.strategy == "priority" or group.strategy == "hedged":
        return str(position)
    return group.strategy
