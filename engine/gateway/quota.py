"""Each client key's own rpm/tpm (``server.keys.NAME.limits``), counted by the engine's rate
limiter in the engine's shared state: in this process with ``cache.backend: memory``, across
every worker and instance on one Redis with ``cache.backend: redis://``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from engine.estimate import estimate_tokens
from engine.graph import ClientKey, Provider, RoutingGraph
from engine.result import Usage
from engine.runtime.state import State

__all__ = ["Quota"]


class Quota:
    """The limiter's windows, one per client key (``gateway-key:NAME``)."""

    def __init__(self, graph: RoutingGraph) -> None:
        self.state = State.create(graph.cache)
        self._windows: dict[str, Provider] = {}
        self.use(graph)

    def use(self, graph: RoutingGraph) -> State | None:
        """Adopt a reloaded graph; returns the old state when the backend changed (to close)."""
        old: State | None = None
        if not self.state.configure(graph.cache):
            old, self.state = self.state, State.create(graph.cache)
        some = next(iter(graph.providers.values()))  # the limiter reads only .name and .limits
        self._windows = {
            k.name: dataclasses.replace(some, name=f"gateway-key:{k.name}", limits=k.limits)
            for k in graph.server.keys.values()
            if k.limits is not None
        }
        return old

    async def admit(self, key: ClientKey | None, request: Mapping[str, Any]) -> tuple[float | None, int]:
        """``(None, tokens)`` when the key's window has room (``tokens``: the estimate counted),
        else ``(seconds, 0)``: a Retry-After (the window spread evenly over its rpm)."""
        window = self._windows.get(key.name) if key is not None else None
        if window is None or window.limits is None:
            return None, 0
        tokens = estimate_tokens(request) if window.limits.tpm is not None else 0
        if await self.state.limiter.acquire(window, tokens):
            return None, tokens
        per = window.limits.rpm or max(1, window.limits.tpm or 1) // max(1, tokens)
        return float(max(1, math.ceil(self.state.limiter.window / max(1, per)))), 0

    async def settle(self, key: ClientKey | None, usage: Usage, estimated: int) -> None:
        """Correct the key's token count with what the answer really used."""
        window = self._windows.get(key.name) if key is not None else None
        if window is None or window.limits is None or window.limits.tpm is None:
            return
        await self.state.limiter.record(window, usage.total_tokens, estimated)

    async def aclose(self) -> None:
        await self.state.aclose()
