"""A routing graph in, Mermaid flowchart text out: routes -> groups -> targets, labelled edges."""

from __future__ import annotations

import re

from engine.graph import Node, RoutingGraph, Target
from engine.strategies import STRATEGIES

__all__ = ["to_mermaid"]


class _Ids:
    """Mermaid-safe node ids, one per name: 'a/b-c' and 'a/b_c' must not become the same node."""

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}
        self.taken: set[str] = set()

    def __call__(self, prefix: str, name: str) -> str:
        key = prefix + name
        if key not in self.by_name:
            base = prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)
            nid, n = base, 1
            while nid in self.taken:
                n += 1
                nid = f"{base}_{n}"
            self.by_name[key] = nid
            self.taken.add(nid)
        return self.by_name[key]


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(graph: RoutingGraph) -> str:
    """Deterministic Mermaid ``flowchart LR`` of the graph (nothing secret in it)."""
    lines = ["flowchart LR"]
    nodes: dict[str, str] = {}
    edges: list[str] = []
    _id = _Ids()

    def node(n: Node) -> str:
        if isinstance(n, Target):
            nid = _id("t_", n.key)
            nodes.setdefault(nid, f'{nid}["{_label(n.key)}"]')
            return nid
        nid = _id("g_", n.name)
        if nid not in nodes:
            strategy = STRATEGIES[n.strategy]
            nodes[nid] = f'{nid}{{{{"{_label(n.name)}<br/>{_label(strategy.node_label(n))}"}}}}'
            for i, m in enumerate(n.members, 1):
                label = _label(strategy.edge_label(n, i, m))
                edges.append(f"  {nid} -->|{label}| {node(m.node)}")
        return nid

    for r in graph.routes:
        rid = f"r{r.index}"
        nodes[rid] = f'{rid}(["#{r.index} {_label(r.match.describe())}"])'
        edges.append(f"  {rid} --> {node(r.to)}")
    lines += [f"  {text}" for text in nodes.values()]
    lines += edges
    return "\n".join(lines) + "\n"
