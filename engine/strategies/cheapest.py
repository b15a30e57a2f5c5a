"""``cheapest``: the member with the lowest price for the request first. The price is the
model's ``price: {input, output}`` (USD per 1M tokens) applied to the request's estimated input
tokens (the rate limiter's estimate) and its ``max_tokens`` (``DEFAULT_OUTPUT`` when unset); a
nested group costs what its cheapest target costs; members without a price go last, in the order
written (ties too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from engine.strategies.base import Env, Order, Path_, Report, Strategy, in_order

if TYPE_CHECKING:
    from engine.graph import Group, Member, Node, Price, Target

DEFAULT_OUTPUT: Final = 256  # output tokens assumed for a request without max_tokens
_UNPRICED: Final = float("inf")


def targets(node: Node) -> list[Target]:
    """The targets a member can reach (itself, or a nested group's, in priority order)."""
    from engine.reach import flatten  # loaded with the graph: a member is a graph node

    return flatten(node)


def price_of(target: Target, model: str) -> Price | None:
    """``target``'s price for a request asking for ``model`` (a pass-through target's depends
    on it)."""
    return target.price(target.model_for(model))


def output_tokens(request: Mapping[str, Any]) -> int:
    out = request.get("max_tokens")
    return out if isinstance(out, int) and out > 0 else DEFAULT_OUTPUT


class Cheapest(Strategy):
    name = "cheapest"
    description = "the lowest price for the request's estimated tokens first, unpriced last"
    policy = (
        "lowest price for the request's estimated tokens first (input estimate, "
        f"max_tokens or {DEFAULT_OUTPUT} out); members without a price last, as written"
    )

    def prepare(self, group: Group, env: Env) -> Order:
        reach = [targets(m.node) for m in group.members]
        if not any(_may_be_priced(t) for ts in reach for t in ts):
            return in_order(len(reach))
        # per member: the prices of its fixed-model targets, and its pass-through targets
        fixed = [[p for t in ts if t.model is not None and (p := t.price(t.model))] for ts in reach]
        through = [[t for t in ts if t.model is None] for ts in reach]
        members = list(zip(fixed, through, strict=True))
        estimate = env.input_tokens
        indexes = range(len(reach))

        def order(model: str, request: Mapping[str, Any]) -> Sequence[int]:
            n_in, n_out = estimate(request), output_tokens(request)
            costs = []
            for prices, passing in members:
                if passing:
                    prices = prices + [p for t in passing if (p := t.price(model))]
                costs.append(min((p.input * n_in + p.output * n_out for p in prices), default=_UNPRICED))
            return sorted(indexes, key=costs.__getitem__)  # stable: ties and unpriced as written

        return order

    def check_group(self, group: Group, path: Path_, report: Report) -> None:
        if not any(_may_be_priced(t) for m in group.members for t in targets(m.node)):
            report(
                (*path, "strategy"),
                f"no member of cheapest group '{group.name}' has a price",
                "add price: {input, output} to the members' models (providers.NAME.models."
                "MODEL.price); until then the members are tried in the order written",
                severity="warning",
            )

    def plan_member(self, group: Group, member: Member, model: str) -> dict[str, Any]:
        prices = [p for t in targets(member.node) if (p := price_of(t, model))]
        best = min(prices, key=lambda p: (p.input + p.output, p.input), default=None)
        return {"price": {"input": best.input, "output": best.output} if best else None}


def _may_be_priced(target: Target) -> bool:
    """A fixed model with a price, or a pass-through target whose provider prices a model."""
    if target.model is not None:
        return target.price(target.model) is not None
    return any(m.price is not None for m in target.provider.models.values())


STRATEGY = Cheapest()
