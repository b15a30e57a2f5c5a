"""The engine's health tracker and circuit states in, a per-provider health report out (with each
of its targets), for ``Engine.health()``: score 0–1, circuit state, latency p50/p95 over the
recent window and its moving average, counts of answered, failed and skipped tries.

The tracker (``engine.telemetry.health.HealthTracker``) is fed by the try lifecycle whatever the
telemetry switches say: ``p:PROVIDER`` and ``t:TARGET`` windows, a ring of the last tries each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from engine.graph import Provider, frozen_map
from engine.runtime.breakers import CLOSED, HALF_OPEN, OPEN
from engine.telemetry.health import Health, HealthTracker

__all__ = ["ProviderHealth", "provider_health"]

_SEVERITY: Final = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """``circuit`` is the provider circuit's state (``closed``, ``open``, ``half_open``; ``none``
    without a breaker), or for a per-model breaker the worst of its model circuits, listed in
    ``circuits``. ``score`` is 0–1: the success rate over the recent window weighed by its p95
    latency against the provider's read timeout (1 before any try). ``latency`` is the moving
    average of answered tries, ``p50``/``p95`` the window's (seconds; ``None`` before the first
    answer). ``tries`` = ``ok`` + ``failures`` (tries that reached the provider); ``skipped``:
    tries passed over at no network cost (open circuit, rate limit). ``targets``: the same per
    target (``provider/model``) of this provider that was tried."""

    provider: str
    circuit: str
    latency: float | None = None
    tries: int = 0
    failures: int = 0
    circuits: Mapping[str, str] = field(default_factory=frozen_map)
    score: float = 1.0
    p50: float | None = None
    p95: float | None = None
    ok: int = 0
    skipped: int = 0
    targets: Mapping[str, Health] = field(default_factory=frozen_map)


def provider_health(provider: Provider, tracker: HealthTracker, states: Mapping[str, str]) -> ProviderHealth:
    """One provider's report from the tracker's windows and the engine's circuit states."""
    name = provider.name
    mine = {k: v for k, v in states.items() if k == name or k.startswith(name + "/")}
    if provider.breaker is None:
        circuit = "none"
    else:
        circuit = max(mine.values(), key=_SEVERITY.__getitem__, default=CLOSED)
    read = provider.speed.read
    prefix = f"t:{name}/"
    targets = {
        key[2:]: tracker.health(key, read) for key in sorted(tracker.windows) if key.startswith(prefix)
    }
    h = tracker.health("p:" + name, read) if "p:" + name in tracker.windows else None
    if h is None:
        return ProviderHealth(name, circuit, circuits=mine, targets=targets)
    return ProviderHealth(
        name,
        circuit,
        h.latency,
        h.ok + h.failed,
        h.failed,
        mine,
        h.score,
        h.p50,
        h.p95,
        h.ok,
        h.skipped,
        targets,
    )
