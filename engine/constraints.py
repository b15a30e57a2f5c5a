"""A route's limits and a target in, whether the target may be tried (and why not): its model's
price against ``max_price``, its recent p95 latency against ``max_latency``. The runtime checks
them on each target after the strategy has ordered them; the compiler refuses a route whose
prices rule out every target; ``engine plan`` shows what each limit rules out."""

from __future__ import annotations

from collections.abc import Iterable

from engine.graph import Constraints, Price, Target
from engine.values import format_duration as fd

__all__ = ["PROBE_EVERY", "excluded_all", "latency_breach", "price_breach", "static_breach"]

PROBE_EVERY = 10.0  # seconds: a target over max_latency is tried once this often, so p95 recovers


def price_breach(limits: Constraints, price: Price | None) -> str | None:
    """Why a model at ``price`` breaks the route's ``max_price`` (``None``: it does not)."""
    if not limits.prices:
        return None
    if price is None:
        return "max_price: the model has no price"
    over = []
    if limits.max_input is not None and price.input > limits.max_input:
        over.append(f"input ${price.input:g} > ${limits.max_input:g}")
    if limits.max_output is not None and price.output > limits.max_output:
        over.append(f"output ${price.output:g} > ${limits.max_output:g}")
    return "max_price: " + ", ".join(over) + " per 1M tokens" if over else None


def latency_breach(limits: Constraints, p95: float | None) -> str | None:
    """Why a target whose recent p95 is ``p95`` breaks ``max_latency`` (``None``: it does not,
    or it has not answered yet)."""
    cap = limits.max_latency
    if cap is None or p95 is None or p95 <= cap:
        return None
    return f"max_latency: recent p95 {fd(p95)} > {fd(cap)}"


def static_breach(limits: Constraints, target: Target) -> str | None:
    """What the compiler can tell: a target of a fixed model whose price breaks ``max_price``
    (a pass-through target's model is the request's: only the runtime can tell)."""
    if target.model is None:
        return None
    return price_breach(limits, target.price(target.model))


def excluded_all(limits: Constraints, targets: Iterable[Target]) -> list[str] | None:
    """Each target's breach when the prices rule out every target, else ``None``."""
    out = []
    for t in targets:
        why = static_breach(limits, t)
        if why is None:
            return None
        out.append(f"{t.key} ({why})")
    return out
