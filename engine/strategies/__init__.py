"""The strategies by name: ``STRATEGIES["priority"]``. A strategy is one module here (its ordering,
plan text, Mermaid labels and compile-time checks); the schema, the compiler, the plan, the Mermaid
picture and the runtime read this registry, and the order of its keys is the schema's enum."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from engine.strategies import cheapest, hedged, least_busy, least_latency, priority, round_robin, weighted
from engine.strategies.base import Env, Observed, Order, Strategy

__all__ = ["STRATEGIES", "Env", "Observed", "Order", "Strategy"]

STRATEGIES: Mapping[str, Strategy] = MappingProxyType(
    {
        s.name: s
        for s in (
            priority.STRATEGY,
            round_robin.STRATEGY,
            weighted.STRATEGY,
            least_latency.STRATEGY,
            hedged.STRATEGY,
            least_busy.STRATEGY,
            cheapest.STRATEGY,
        )
    }
)
