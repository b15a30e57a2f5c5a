"""A group and what the engine has observed in, the order to try its members out. The ordering
itself is the group's strategy's (``engine.strategies``); this module keeps the observations it
reads (latency and failure moving averages, kept in the engine's health tracker; requests in
flight) and binds a strategy to a group
once per graph."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from engine.graph import Group, Member, Node
from engine.runtime.state import estimate_tokens
from engine.strategies import STRATEGIES, Env, Order
from engine.telemetry.health import HealthTracker

__all__ = ["FAILURE_PENALTY", "GroupOrder", "Latencies", "input_tokens", "node_name"]

FAILURE_PENALTY: Final = 1.0  # seconds added to a member's score per unit of recent failure rate


def node_name(node: Node) -> str:
    return node.name if isinstance(node, Group) else node.key


def input_tokens(request: Mapping[str, Any]) -> int:
    """The rate limiter's estimate of a request's tokens, less its answer's (``max_tokens``)."""
    out = request.get("max_tokens")
    return estimate_tokens(request, 0) - (out if isinstance(out, int) and out > 0 else 0)


class Latencies:
    """Observations per member key (``group>member``), shared by every graph of one engine: the
    engine's one health tracker (``m:`` windows: moving averages of answer latency and of
    failure, the same windows and constants the health view reads), when each member was last
    heard from, and how many requests each has in flight (``enter``/``leave``)."""

    __slots__ = ("busy", "seen", "tracker")

    def __init__(self, tracker: HealthTracker | None = None) -> None:
        self.tracker = tracker if tracker is not None else HealthTracker()
        self.seen: dict[str, float] = {}
        self.busy: dict[str, int] = {}

    def observe(self, key: str, latency: float, ok: bool) -> None:
        self.tracker.record("m:" + key, ok, latency)
        self.seen[key] = time.monotonic()

    def score(self, key: str) -> float:
        """Lower is better; a member never observed scores 0 so it is tried (explored) early."""
        w = self.tracker.windows.get("m:" + key)
        if w is None:
            return 0.0
        latency = w.moving
        return w.failing * FAILURE_PENALTY + (latency if latency is not None else 0.0)

    def enter(self, key: str) -> None:
        busy = self.busy
        busy[key] = busy.get(key, 0) + 1

    def leave(self, key: str) -> None:
        busy = self.busy
        left = busy[key] - 1
        if left:
            busy[key] = left
        else:
            del busy[key]  # idle members leave no entry behind


class GroupOrder:
    """A group bound to its strategy, once per group and graph: ``order(model, request)`` is
    called once per request that reaches the group; ``timed``, ``counts_busy`` and ``races``
    say what the executor does around the members' runs."""

    __slots__ = ("_keys", "counts_busy", "group", "members", "order", "races", "timed")

    def __init__(self, group: Group, rng: random.Random, stats: Latencies) -> None:
        strategy = STRATEGIES[group.strategy]
        self.group = group
        self.members: tuple[Member, ...] = group.members
        self._keys = tuple(f"{group.name}>{node_name(m.node)}" for m in group.members)
        self.timed = strategy.timed
        self.counts_busy = strategy.counts_busy
        self.races = strategy.races
        self.order: Order = (
            _only
            if len(self.members) == 1
            else strategy.prepare(group, Env(self._keys, rng, stats, input_tokens))
        )

    def key(self, index: int) -> str:
        """The observation key of member ``index``."""
        return self._keys[index]


_ONE: Final = range(1)


def _only(model: str, request: Mapping[str, Any]) -> Sequence[int]:
    return _ONE
