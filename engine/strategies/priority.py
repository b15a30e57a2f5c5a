"""``priority``: the members in the order written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.strategies.base import Env, Order, Strategy, in_order

if TYPE_CHECKING:
    from engine.graph import Group, Member


class Priority(Strategy):
    name = "priority"
    description = "in the order written"
    policy = "in the order written"
    fixed_order = True

    def prepare(self, group: Group, env: Env) -> Order:
        return in_order(len(group.members))

    def edge_label(self, group: Group, position: int, member: Member) -> str:
        return str(position)


STRATEGY = Priority()
