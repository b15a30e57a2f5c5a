"""``round_robin``: the order written, starting one member further along for each request."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.strategies.base import Env, Order, Strategy

if TYPE_CHECKING:
    from engine.graph import Group


class RoundRobin(Strategy):
    name = "round_robin"
    description = "the order written, starting one further along for each request"
    policy = "rotating: each request starts one target further along"

    def prepare(self, group: Group, env: Env) -> Order:
        n = len(group.members)
        counter = itertools.count()

        def order(model: str, request: Mapping[str, Any]) -> Sequence[int]:
            start = next(counter) % n
            return [*range(start, n), *range(start)]

        return order


STRATEGY = RoundRobin()
