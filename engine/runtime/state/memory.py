"""The process-local backend (``cache.backend: memory``): a bounded TTL dict per namespace, a
sliding-window rate limiter, no peers to coordinate with, and no shared circuits (each engine keeps
purgatory's in-memory ones). Nothing here yields to the loop or fails, so it needs no guard."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine.graph import Limits, Provider
from engine.runtime.state.base import WINDOW, Entries

__all__ = ["MemoryBackend", "MemoryLimiter", "MemoryStore", "NoPeers"]

T = TypeVar("T")


class MemoryStore:
    """A process-local store: a dict of (expiry, value), values kept as Python objects, at most
    ``max_entries`` of them (past that, expired entries go first, then the oldest written).

    Not aiocache's ``SimpleMemoryCache``: measured inside ``route()``, its call layer (decorators,
    key building, debug logging, one event-loop timer per entry for the TTL) cost ~21 us per cache
    miss (get 7 + set 14) against ~1 us here; it has no size bound; and its timers belong to the
    loop that set them (entries set from ``route_sync``'s loop thread never expired elsewhere).
    """

    __slots__ = ("_data", "max_entries", "shared")

    def __init__(self, max_entries: int = 10_000) -> None:
        self.shared = False
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def lookup(self, key: str) -> Any:
        """``get`` without a coroutine (nothing here waits)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._data[key]
            return None
        return entry[1]

    def put(self, key: str, value: Any, ttl: float | None) -> None:
        """``set`` without a coroutine."""
        data = self._data
        data.pop(key, None)  # re-inserted as the newest
        data[key] = (time.monotonic() + ttl if ttl else math.inf, value)
        if len(data) > self.max_entries:
            self._evict()

    async def get(self, key: str) -> Any:
        return self.lookup(key)

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        self.put(key, value, ttl)

    def _evict(self) -> None:
        """Drop the oldest written entries down to 90 % of ``max_entries`` (so this runs once per
        ~10 % of the bound, not on every insert), and the expired ones in front of them: it
        looks at no more entries than it drops (a store's entries mostly share one TTL, so the
        oldest written expire first; one expired behind a live one goes when it is read)."""
        data = self._data
        now = time.monotonic()
        excess = len(data) - self.max_entries * 9 // 10
        drop = []
        for key, (expiry, _) in data.items():
            if excess <= 0 and expiry > now:
                break
            drop.append(key)
            excess -= 1
        for key in drop:
            del data[key]

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def clear(self) -> None:
        self._data.clear()


class _Window:
    __slots__ = ("requests", "tokens", "total")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()
        self.total = 0


class MemoryLimiter:
    """Sliding-window log per provider, in this process."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._windows: dict[str, _Window] = {}

    async def acquire(
        self, provider: Provider, tokens: int = 0, *, wait_until: float | None = None, key: str | None = None
    ) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        name = key or provider.name
        w = self._windows.get(name)
        if w is None:
            w = self._windows[name] = _Window()
        while True:
            wait = self._admit(w, limits, tokens, time.monotonic())
            if wait <= 0:
                return True
            if wait_until is None or asyncio.get_running_loop().time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def record(
        self, provider: Provider, actual_tokens: int, estimated_tokens: int, *, key: str | None = None
    ) -> None:
        w = self._windows.get(key or provider.name)
        delta = actual_tokens - estimated_tokens
        if w is None or provider.limits is None or provider.limits.tpm is None or delta == 0:
            return
        w.tokens.append((time.monotonic(), delta))
        w.total += delta

    async def flush(self) -> None:
        return None

    def _admit(self, w: _Window, limits: Limits, tokens: int, now: float) -> float:
        """0 when admitted (and counted); otherwise the seconds until there may be room."""
        horizon = now - self.window
        while w.requests and w.requests[0] <= horizon:
            w.requests.popleft()
        while w.tokens and w.tokens[0][0] <= horizon:
            w.total -= w.tokens.popleft()[1]
        rpm, tpm = limits.rpm, limits.tpm
        wait = 0.0
        if rpm is not None and len(w.requests) >= rpm:
            wait = w.requests[len(w.requests) - rpm] + self.window - now
        if tpm is not None and tokens > 0:
            tokens = min(tokens, tpm)
            wait = max(wait, _token_wait(w, tokens - (tpm - w.total), now, self.window))
        if wait > 0:
            return wait
        if rpm is not None:
            w.requests.append(now)
        if tpm is not None and tokens > 0:
            w.tokens.append((now, tokens))
            w.total += tokens
        return 0.0


def _token_wait(w: _Window, need: int, now: float, window: float) -> float:
    """Seconds until ``need`` tokens have left the window (0 when ``need`` <= 0)."""
    if need <= 0:
        return 0.0
    freed, at = 0, w.tokens[-1][0] if w.tokens else now
    for ts, n in w.tokens:
        freed += n
        if freed >= need:
            at = ts
            break
    return at + window - now


class NoPeers:
    """Single-flight across instances when there are none: the call runs here."""

    async def run(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        entries: Entries[T],
        *,
        deadline: float | None = None,
    ) -> T:
        return await call()

    def stats(self) -> dict[str, int]:
        return {}

    async def written(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class MemoryBackend:
    """Everything in this process: nothing is shared with another instance."""

    name = "memory"
    remote = False

    def __init__(self, *, window: float = WINDOW) -> None:
        self.limiter = MemoryLimiter(window)
        self.flights = NoPeers()

    def store(self, namespace: str) -> MemoryStore:
        return MemoryStore()

    def circuits(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
