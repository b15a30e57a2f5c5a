"""Finished tries in, a per-provider health report out: circuit state, moving-average latency and
counts, for ``Engine.health()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from engine.graph import frozen_map

__all__ = ["ProviderHealth", "Tally"]

_ALPHA: Final = 0.2


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """``circuit`` is the provider circuit's state (``closed``, ``open``, ``half_open``), or for a
    per-model breaker the worst of its model circuits, listed in ``circuits``. ``latency`` is the
    moving average of answered tries, in seconds (``None`` before the first answer)."""

    provider: str
    circuit: str
    latency: float | None = None
    tries: int = 0
    failures: int = 0
    circuits: Mapping[str, str] = field(default_factory=frozen_map)


class Tally:
    """Counts and moving-average latency per provider; a few dict operations per try."""

    __slots__ = ("failures", "latency", "tries")

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.tries: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def ok(self, provider: str, latency: float) -> None:
        old = self.latency.get(provider)
        self.latency[provider] = latency if old is None else old + _ALPHA * (latency - old)
        self.tries[provider] = self.tries.get(provider, 0) + 1

    def failed(self, provider: str) -> None:
        self.tries[provider] = self.tries.get(provider, 0) + 1
        self.failures[provider] = self.failures.get(provider, 0) + 1
