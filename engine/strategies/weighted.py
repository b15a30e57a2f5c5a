"""``weighted``: a random order drawn by weight for each request (seedable through the engine's
random generator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.strategies.base import Env, Order, Strategy

if TYPE_CHECKING:
    from engine.graph import Group, Member


class Weighted(Strategy):
    name = "weighted"
    description = "a random order drawn by weight for each request"
    policy = "random draw by weight, then the rest by weight"

    def prepare(self, group: Group, env: Env) -> Order:
        weights = [max(m.weight, 0.0) for m in group.members]
        rand = env.rng.random

        def order(model: str, request: Mapping[str, Any]) -> Sequence[int]:
            """Sampling without replacement (Efraimidis-Spirakis): each member draws
            ``u ** (1 / weight)`` and the highest goes first."""
            keyed = [(rand() ** (1.0 / w) if w > 0 else -1.0, i) for i, w in enumerate(weights)]
            keyed.sort(reverse=True)
            return [i for _, i in keyed]

        return order

    def edge_label(self, group: Group, position: int, member: Member) -> str:
        return f"w={member.weight:g}"

    def plan_member(self, group: Group, member: Member, model: str) -> dict[str, Any]:
        total = sum(m.weight for m in group.members)
        return {"weight": member.weight, "share": round(member.weight / total, 4)}


STRATEGY = Weighted()
