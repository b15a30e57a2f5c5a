"""``hedged``: in the order written, racing; the executor starts the next member whenever
``hedge_after`` passes without an answer, and the first answer wins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.strategies.base import Env, GroupShape, Order, Path_, Report, Strategy, in_order
from engine.values import format_duration

if TYPE_CHECKING:
    from engine.graph import Group, Member


class Hedged(Strategy):
    name = "hedged"
    description = "in the order written, racing: the next starts after hedge_after"
    policy = "in order; the next starts if the current has not answered after hedge_after"
    fixed_order = True
    races = True

    def prepare(self, group: Group, env: Env) -> Order:
        return in_order(len(group.members))

    def check(self, spec: GroupShape, path: Path_, report: Report) -> None:
        if spec.hedge_after is None:
            report(
                (*path, "strategy"),
                "strategy hedged needs hedge_after",
                "add hedge_after: 400ms (when to start the next target)",
            )

    def node_label(self, group: Group) -> str:
        if group.hedge_after is None:
            return self.name
        return f"{self.name} after {format_duration(group.hedge_after)}"

    def edge_label(self, group: Group, position: int, member: Member) -> str:
        return str(position)


STRATEGY = Hedged()
