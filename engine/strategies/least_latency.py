"""``least_latency``: the lowest moving-average latency first (recent failures count against a
member); one request in ten puts the member heard from least recently first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from engine.strategies.base import Env, Order, Strategy

if TYPE_CHECKING:
    from engine.graph import Group

EXPLORE: Final = 0.1  # share of requests that put the stalest member first


class LeastLatency(Strategy):
    name = "least_latency"
    description = "the lowest moving-average latency first, exploring now and then"
    policy = "fastest moving-average latency first; untried or recovered targets are explored now and then"
    timed = True

    def prepare(self, group: Group, env: Env) -> Order:
        keys = env.keys
        score = env.observed.score
        seen = env.observed.seen
        rand = env.rng.random
        indexes = range(len(keys))

        def order(model: str, request: Mapping[str, Any]) -> Sequence[int]:
            ranked = sorted(indexes, key=lambda i: score(keys[i]))
            if rand() < EXPLORE:  # try the member heard from least recently first
                stalest = min(ranked, key=lambda i: seen.get(keys[i], 0.0))
                ranked.remove(stalest)
                ranked.insert(0, stalest)
            return ranked

        return order


STRATEGY = LeastLatency()
