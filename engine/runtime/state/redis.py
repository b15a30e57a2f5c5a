"""The shared backend (``cache.backend: redis://``, ``rediss://``, ``unix://``): one client this
module owns, behind the guard (fail soft, one warning per outage), serving every piece of state.

- values: aiocache's ``RedisCache`` (JSON) per namespace, on this client's connection pool;
- the response cache across instances: ``redis_flights`` (a hit one round trip, a miss two);
- limits: ``redis_limiter`` (one quota for every instance, spent through local leases: one
  admission script per lease, not per request);
- circuits: ``redis_circuits`` (atomic transitions, a closed circuit costs no round trip).

Every key is under ``cache.namespace``. Foreign libraries through their public APIs only:
aiocache 0.12 builds its client from host and port; its ``connection_pool_class`` argument hands
it this client's pool instead (its timeouts, retry policy and TLS, one pool closed by ``aclose``).
With ``hiredis`` installed (the ``hiredis`` extra) redis-py parses replies in C.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from aiocache import RedisCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.runtime.state.base import WINDOW, Guard
from engine.runtime.state.redis_circuits import RedisCircuits
from engine.runtime.state.redis_flights import RedisFlights
from engine.runtime.state.redis_limiter import RedisLimiter

__all__ = ["RedisBackend", "RedisLimiter", "RedisStore", "redis_client"]

SCHEMES = ("redis://", "rediss://", "unix://")


def redis_client(url: str, *, timeout: float = 0.25) -> aioredis.Redis:
    """A client for ``redis://`` / ``rediss://`` URLs with a short connect timeout and one
    immediate reconnect (redis-py's default backs off and retries three times). No socket
    timeout: the guard bounds every operation (``timeout``), and redis-py drops a connection whose
    read was cut short; its own per-read timer cost ~45 us of CPU per command here."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        decode_responses=False,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class RedisBackend:
    """Every piece of state on one Redis, keys under ``namespace``; shared by every instance
    that names the same Redis and namespace."""

    name = "redis"
    remote = True

    def __init__(
        self,
        url: str,
        namespace: str,
        guard: Guard,
        *,
        window: float = WINDOW,
        lock_ttl: float = 10.0,
        lease: float = 1.0,
        staleness: float = 0.5,
    ) -> None:
        try:
            self.client = redis_client(url, timeout=guard.timeout)
        except ValueError as exc:  # redis-py's message may quote the URL
            raise ValueError(f"cache.backend: {guard.scrub(str(exc))}") from None
        self.namespace = namespace
        self.guard = guard
        self.limiter = RedisLimiter(self.client, guard, window=window, prefix=f"{namespace}:rl")
        self.flights = RedisFlights(
            self.client,
            guard,
            values=f"{namespace}:resp:",  # the ``resp`` store's keys (aiocache: namespace:key)
            locks=f"{namespace}:flight:",
            lock_ttl=lock_ttl,
            lease=lease,
        )
        self._circuits = RedisCircuits(self.client, guard, f"{namespace}:", staleness=staleness)

    def store(self, namespace: str) -> RedisStore:
        return RedisStore(self.client, f"{self.namespace}:{namespace}", self.guard)

    def circuits(self) -> RedisCircuits:
        return self._circuits

    async def ping(self) -> bool:
        client = self.client
        return bool(await self.guard.run("ping", lambda: client.ping(), False))

    async def aclose(self) -> None:
        await self.flights.aclose()
        await self.limiter.aclose()
        await self.client.aclose()


class RedisStore:
    """One aiocache ``RedisCache`` under one namespace, values as JSON, every call fail-soft
    through the guard (which bounds each call, so aiocache's own timeout is off)."""

    __slots__ = ("_cache", "_guard", "shared")

    def __init__(self, client: aioredis.Redis, namespace: str, guard: Guard) -> None:
        pool = client.connection_pool
        self._cache = RedisCache(namespace=namespace, timeout=None, connection_pool_class=lambda **_: pool)
        self._guard = guard
        self.shared = True

    async def get(self, key: str) -> Any:
        """The value, or ``None`` on a miss or a backend failure."""
        return await self._guard.run("cache.get", lambda: self._cache.get(key), None)

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        seconds = float(ttl) if ttl else None
        await self._guard.run("cache.set", lambda: self._cache.set(key, value, ttl=seconds), None)

    async def delete(self, key: str) -> None:
        await self._guard.run("cache.delete", lambda: self._cache.delete(key), None)

    async def clear(self) -> None:
        ns = self._cache.namespace
        await self._guard.run("cache.clear", lambda: self._cache.clear(namespace=ns), None)
