"""Resolved graph nodes in, what a route can reach out: its targets in order, its worst-case time,
the groups it uses, and which earlier route shadows it."""

from __future__ import annotations

import heapq

from engine.graph import Group, Match, Node, Route, Target

__all__ = ["Shadows", "flatten", "groups_in", "worst_case"]


def worst_case(node: Node) -> float:
    """Upper bound of a node's time: a target's tries and backoff; for a group, the sum over the
    ``max_attempts`` costliest members (any of them may be the ones tried)."""
    if isinstance(node, Target):
        return node.provider.speed.worst_case()
    costs = sorted((worst_case(m.node) for m in node.members), reverse=True)
    return sum(costs[: node.max_attempts])


def flatten(node: Node) -> list[Target]:
    """Every target a node can reach, in priority order, without repeats."""
    out: list[Target] = []
    seen: set[str] = set()

    def walk(n: Node) -> None:
        if isinstance(n, Target):
            if n.key not in seen:
                seen.add(n.key)
                out.append(n)
        else:
            for m in n.members:
                walk(m.node)

    walk(node)
    return out


def groups_in(node: Node, acc: set[str]) -> None:
    if isinstance(node, Group) and node.name not in acc:
        acc.add(node.name)
        for m in node.members:
            groups_in(m.node, acc)


class Shadows:
    """Earlier routes indexed by what they match, so finding the first one that shadows a new
    route looks only at the catch-model ones and those with the same model (not all of them:
    5,000 routes were 12.5 million comparisons)."""

    def __init__(self) -> None:
        self.any_model: list[Route] = []
        self.by_model: dict[str, list[Route]] = {}

    def add(self, route: Route) -> None:
        model = route.match.model
        if model is None or model == "*":
            self.any_model.append(route)
        else:
            self.by_model.setdefault(model, []).append(route)

    def first(self, later: Match) -> int | None:
        same = self.by_model.get(later.model, []) if later.model is not None else []
        for r in heapq.merge(self.any_model, same, key=lambda r: r.index):
            if _shadows(r.match, later):
                return r.index
        return None


def _shadows(earlier: Match, later: Match) -> bool:
    """True when ``earlier`` matches every request ``later`` does (so ``later`` is dead)."""
    if earlier.model is not None and earlier.model != later.model and earlier.model != "*":
        return False
    return all(later.metadata.get(k, _MISSING) == v for k, v in earlier.metadata.items())


_MISSING = object()
