"""``least_busy``: the member with the fewest of this group's requests in flight first (the
executor counts them, in this process); ties keep the order written, so an idle group behaves
like ``priority`` and overflow spills to the next member only under concurrency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.strategies.base import Env, Order, Strategy

if TYPE_CHECKING:
    from engine.graph import Group


class LeastBusy(Strategy):
    name = "least_busy"
    description = "the fewest requests in flight first, ties in the order written"
    policy = "fewest requests in flight first (this process); ties in the order written"
    counts_busy = True

    def prepare(self, group: Group, env: Env) -> Order:
        keys = env.keys
        busy = env.observed.busy
        indexes = range(len(keys))

        def order(model: str, request: Mapping[str, Any]) -> Sequence[int]:
            return sorted(indexes, key=lambda i: busy.get(keys[i], 0))  # stable: ties as written

        return order


STRATEGY = LeastBusy()
