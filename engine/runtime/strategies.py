"""A group and what the engine has observed in, the order to try its members out: priority,
round robin, weighted (seedable) and least latency (moving average, with exploration). Hedged
groups are ordered as written; the executor races them."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from typing import Final

from engine.graph import Group, Member, Node

__all__ = ["EXPLORE", "FAILURE_PENALTY", "GroupOrder", "Latencies", "node_name"]

ALPHA: Final = 0.3  # weight of the newest sample in the moving averages
EXPLORE: Final = 0.1  # least_latency: share of requests that put the stalest member first
FAILURE_PENALTY: Final = 1.0  # seconds added to a member's score per unit of recent failure rate


def node_name(node: Node) -> str:
    return node.name if isinstance(node, Group) else node.key


class Latencies:
    """Moving averages per key: latency of answers, and the rate of recent failures."""

    __slots__ = ("failure", "latency", "seen")

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.failure: dict[str, float] = {}
        self.seen: dict[str, float] = {}

    def observe(self, key: str, latency: float, ok: bool) -> None:
        if ok:
            old = self.latency.get(key)
            self.latency[key] = latency if old is None else old + ALPHA * (latency - old)
        old_f = self.failure.get(key, 0.0)
        self.failure[key] = old_f + ALPHA * ((0.0 if ok else 1.0) - old_f)
        self.seen[key] = time.monotonic()

    def score(self, key: str) -> float:
        """Lower is better; a member never observed scores 0 so it is tried (explored) early."""
        latency = self.latency.get(key)
        failure = self.failure.get(key, 0.0)
        if latency is None:
            return failure * FAILURE_PENALTY
        return latency + failure * FAILURE_PENALTY


class GroupOrder:
    """Precomputed per group and graph; ``order()`` is called once per request that reaches it."""

    __slots__ = ("_counter", "_keys", "_rng", "_stats", "_weights", "group", "members")

    def __init__(self, group: Group, rng: random.Random, stats: Latencies) -> None:
        self.group = group
        self.members: tuple[Member, ...] = group.members
        self._rng = rng
        self._stats = stats
        self._counter = itertools.count()
        self._weights = [max(m.weight, 0.0) for m in group.members]
        self._keys = [f"{group.name}>{node_name(m.node)}" for m in group.members]

    def key(self, index: int) -> str:
        """The latency-statistics key of member ``index`` (least_latency groups)."""
        return self._keys[index]

    def order(self) -> Sequence[int]:
        """Member indexes in the order to try them."""
        n = len(self.members)
        strategy = self.group.strategy
        if strategy == "priority" or strategy == "hedged" or n == 1:
            return range(n)
        if strategy == "round_robin":
            start = next(self._counter) % n
            return [*range(start, n), *range(start)]
        if strategy == "weighted":
            return self._weighted()
        return self._least_latency()

    def _weighted(self) -> list[int]:
        """Weighted sampling without replacement (Efraimidis-Spirakis): each member draws
        ``u ** (1 / weight)`` and the highest goes first; weight 0 goes last."""
        rand = self._rng.random
        keyed = [(rand() ** (1.0 / w) if w > 0 else -1.0, i) for i, w in enumerate(self._weights)]
        keyed.sort(reverse=True)
        return [i for _, i in keyed]

    def _least_latency(self) -> list[int]:
        score = self._stats.score
        order = sorted(range(len(self.members)), key=lambda i: score(self._keys[i]))
        if self._rng.random() < EXPLORE:  # try the member heard from least recently first
            seen = self._stats.seen
            stalest = min(order, key=lambda i: seen.get(self._keys[i], 0.0))
            order.remove(stalest)
            order.insert(0, stalest)
        return order
