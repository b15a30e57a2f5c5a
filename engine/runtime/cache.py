"""Keys and values in, cached values out: a process-local TTL store, aiocache's Redis store (the only
aiocache import) behind a fail-soft guard, and the response cache keyed by sha256 of (endpoint
identity, model, rendered body)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiocache.backends.redis import RedisCache
from aiocache.base import BaseCache

from engine.result import ReasoningBlock, Response, ToolCall, Usage, reasoning_text
from engine.values import Scrubber

__all__ = [
    "Guard",
    "MemoryStore",
    "ResponseCache",
    "StateWarning",
    "Store",
    "Warn",
    "memory_store",
    "redis_store",
]

T = TypeVar("T")
D = TypeVar("D")
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StateWarning:
    """A shared backend went away (``degraded``) or came back (``recovered``). ``error`` is the
    exception's type and message; Redis errors name host and port, never a password."""

    event: Literal["degraded", "recovered"]
    operation: str  # e.g. "cache.get", "limits.acquire", "flight.lock"
    error: str = ""

    def __str__(self) -> str:
        tail = f": {self.error}" if self.error else ""
        return f"shared state {self.event} during {self.operation}{tail}"


Warn = Callable[[StateWarning], None]


class Guard:
    """Runs backend operations with a timeout; on failure returns the default, reports once and
    skips the backend for ``cooldown`` seconds, after which a single caller probes it again.

    So a shared backend that fails (Redis down, slow, wrong password) never fails a request: the
    operation answers its default (a miss), and one ``StateWarning`` tells of the outage.
    """

    __slots__ = ("_down_until", "_scrubber", "cooldown", "degraded", "failures", "on_warning",
                 "timeout")

    def __init__(self, on_warning: Warn | None = None, *, timeout: float = 0.25,
                 cooldown: float = 2.0, scrubber: Scrubber | None = None) -> None:
        self.on_warning = on_warning
        self._scrubber = scrubber
        self.timeout = timeout
        self.cooldown = cooldown
        self.degraded = False
        self.failures = 0
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while cooling down after a failure (and no network is tried)."""
        return not self.degraded or time.monotonic() >= self._down_until

    async def run(self, operation: str, fn: Callable[[], Awaitable[T]], default: D) -> T | D:
        if self.degraded:
            now = time.monotonic()
            if now < self._down_until:
                return default
            self._down_until = now + self.cooldown  # this caller probes; the others keep skipping
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn()
        except Exception as exc:
            self._fail(operation, exc)
            return default
        if self.degraded:
            self.degraded = False
            self._emit(StateWarning("recovered", operation))
        return result

    def _fail(self, operation: str, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = time.monotonic() + self.cooldown
        if not self.degraded:
            self.degraded = True
            detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "")
            self._emit(StateWarning("degraded", operation,
                                    self.scrub(f"{type(exc).__name__}: {detail}")))

    def scrub(self, text: str) -> str:
        """``text`` with the backend's secrets masked (host and password of a URL read from the
        environment), cut to 300 characters."""
        return self._scrubber.scrub(text) if self._scrubber is not None else text[:300]

    def _emit(self, warning: StateWarning) -> None:
        if self.on_warning is None:
            _log.warning("%s", warning)
            return
        try:
            self.on_warning(warning)
        except Exception:  # a broken listener must not fail a request
            _log.exception("state warning listener failed")


class Store:
    """One aiocache cache under one namespace. With a guard (Redis) every operation is fail-soft;
    without one (memory) it calls aiocache directly, with aiocache's per-call timeout off."""

    __slots__ = ("_cache", "_guard", "shared")

    def __init__(self, cache: BaseCache, guard: Guard | None = None) -> None:
        self._cache = cache
        self._guard = guard
        self.shared = guard is not None  # values cross processes: must be JSON

    async def get(self, key: str) -> Any:
        """The value, or ``None`` on a miss or a backend failure."""
        if self._guard is None:
            return await self._cache.get(key)
        return await self._guard.run("cache.get", lambda: self._cache.get(key), None)

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        if self._guard is None:
            await self._cache.set(key, value, ttl=ttl)
            return
        await self._guard.run("cache.set", lambda: self._cache.set(key, value, ttl=float(ttl)
                                                                   if ttl else None), None)

    async def delete(self, key: str) -> None:
        if self._guard is None:
            await self._cache.delete(key)
        else:
            await self._guard.run("cache.delete", lambda: self._cache.delete(key), None)

    async def clear(self) -> None:
        """Remove every key of this store's namespace (and nothing else)."""
        ns = self._cache.namespace
        if self._guard is None:
            await self._cache.clear(namespace=ns)
        else:
            await self._guard.run("cache.clear", lambda: self._cache.clear(namespace=ns), None)


class MemoryStore(Store):
    """A process-local store: a dict of (expiry, value), values kept as Python objects, at most
    ``max_entries`` of them (past that, expired entries go first, then the oldest written).

    Not aiocache's ``SimpleMemoryCache``: measured inside ``route()``, its call layer (decorators,
    key building, debug logging, one event-loop timer per entry for the TTL) cost ~21 us per cache
    miss (get 7 + set 14) against ~1 us here; it has no size bound; and its timers belong to the
    loop that set them (entries set from ``route_sync``'s loop thread never expired elsewhere).
    """

    __slots__ = ("_data", "max_entries")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._cache = None
        self._guard = None
        self.shared = False
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._data[key]
            return None
        return entry[1]

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        data = self._data
        data.pop(key, None)  # re-inserted as the newest
        data[key] = (time.monotonic() + ttl if ttl else math.inf, value)
        if len(data) > self.max_entries:
            self._evict()

    def _evict(self) -> None:
        """Drop expired entries, then the oldest written, down to 90 % of ``max_entries`` (so
        the scan runs once per ~10 % of the bound, not on every insert)."""
        data = self._data
        now = time.monotonic()
        for key in [k for k, (expiry, _) in data.items() if expiry <= now]:
            del data[key]
        excess = len(data) - self.max_entries * 9 // 10
        if excess > 0:
            for key in list(itertools.islice(data, excess)):
                del data[key]

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def clear(self) -> None:
        self._data.clear()


def memory_store(max_entries: int = 10_000) -> MemoryStore:
    """A process-local store (see ``MemoryStore``)."""
    return MemoryStore(max_entries)


def redis_store(client: Any, namespace: str, guard: Guard) -> Store:
    """A Redis store on ``client`` (a ``redis.asyncio.Redis`` with ``decode_responses=False``),
    values as JSON. The guard bounds each call, so aiocache's own timeout is off."""
    cache = RedisCache(namespace=namespace, timeout=None)
    # aiocache 0.12 builds its own client from host/port; share ours (its timeouts, no retry
    # storms, one pool, closed by the state). aiocache 1.0 takes ``client=`` for the same purpose.
    cache.client = client
    return Store(cache, guard)


class ResponseCache:
    """Responses by ``key(target_key, body)``; hits come back with ``cached=True``, no attempts and
    no raw body. ``ttl`` is ``cache.responses.ttl`` (``None``: nothing is stored)."""

    __slots__ = ("_store", "ttl")

    def __init__(self, store: Store, ttl: float | None) -> None:
        self._store = store
        self.ttl = ttl

    @staticmethod
    def key(endpoint: str, body: bytes | str) -> str:
        """sha256 of the endpoint (the connection's identity: kind, URL and a digest of the
        credentials; and the model) and the rendered body. The credentials enter only as a
        digest, so keys are safe to share and to log."""
        h = hashlib.sha256(endpoint.encode())
        h.update(b"\x00")
        h.update(body if isinstance(body, bytes) else body.encode())
        return h.hexdigest()

    async def get(self, key: str) -> Response | None:
        value = await self._store.get(key)
        if value is None:
            return None
        if type(value) is Response:
            return value
        try:
            return decode_response(value)
        except (KeyError, TypeError, ValueError):  # a foreign or older entry: treat as a miss
            return None

    async def set(self, key: str, response: Response) -> None:
        if self.ttl is None:
            return
        stored = Response(
            text=response.text, provider=response.provider, model=response.model,
            finish_reason=response.finish_reason, tool_calls=response.tool_calls,
            usage=response.usage, cost=response.cost, cached=True,
            reasoning=response.reasoning, reasoning_blocks=response.reasoning_blocks,
        )
        await self._store.set(key, encode_response(stored) if self._store.shared else stored,
                              self.ttl)

    async def delete(self, key: str) -> None:
        await self._store.delete(key)

    async def clear(self) -> None:
        await self._store.clear()


def encode_response(r: Response) -> dict[str, Any]:
    """The JSON form kept in a shared store (version 1; the usage details and ``reasoning``
    were added later: entries without them read as none)."""
    u = r.usage
    out = {
        "v": 1, "text": r.text, "provider": r.provider, "model": r.model,
        "finish_reason": r.finish_reason,
        "tool_calls": [[c.id, c.name, c.arguments] for c in r.tool_calls],
        "usage": [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                  u.reasoning_tokens],
        "cost": r.cost,
    }
    if r.reasoning_blocks:
        out["reasoning"] = [[b.kind, b.text, b.signature, b.redacted] for b in r.reasoning_blocks]
    return out


def decode_response(d: dict[str, Any]) -> Response:
    if d.get("v") != 1:
        raise ValueError("unknown cache entry version")
    blocks = tuple(ReasoningBlock(str(k), str(t), _opt(s), _opt(r))
                   for k, t, s, r in d.get("reasoning") or ())
    return Response(
        text=d["text"], provider=d["provider"], model=d["model"],
        finish_reason=d["finish_reason"],
        tool_calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in d["tool_calls"]),
        usage=Usage(*(int(n) for n in d["usage"][:5])), cost=d["cost"], cached=True,
        reasoning=reasoning_text(blocks), reasoning_blocks=blocks,
    )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
