"""The shared backend (``cache.backend: redis://``, ``rediss://``, ``unix://``): one client this
module owns, behind the guard (fail soft, one warning per outage), serving every piece of state.

- values: aiocache's ``RedisCache`` (JSON) per namespace, on this client's connection pool;
- the response cache across instances: ``redis_flights`` (a hit one round trip, a miss two);
- limits: one Lua script per admission (over ``redis_link``), on the server's clock, so
  instances share one quota; the token corrections gathered and sent in the background (one
  script per window and flush);
- circuits: ``redis_circuits`` (atomic transitions, a closed circuit costs no round trip).

Every key is under ``cache.namespace``. Foreign libraries through their public APIs only:
aiocache 0.12 builds its client from host and port; its ``connection_pool_class`` argument hands
it this client's pool instead (its timeouts, retry policy and TLS, one pool closed by ``aclose``).
With ``hiredis`` installed (the ``hiredis`` extra) redis-py parses replies in C.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from aiocache import RedisCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.graph import Provider
from engine.runtime.state.base import WINDOW, Guard
from engine.runtime.state.redis_circuits import RedisCircuits
from engine.runtime.state.redis_flights import RedisFlights
from engine.runtime.state.redis_link import Link, Script

__all__ = ["RedisBackend", "RedisLimiter", "RedisStore", "redis_client"]

SCHEMES = ("redis://", "rediss://", "unix://")
FLUSH = 0.05  # seconds: token corrections reach Redis this long after the answer, at most


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


# KEYS: requests zset, tokens zset, token total, sequence. ARGV: window ms, rpm, tpm, tokens
# (0: no limit). Members are "<ms>-<seq>" (requests) and "<ms>-<seq>:<tokens>" (tokens). Time is
# the server's, so instances with skewed clocks still share one window. Returns 0 when admitted,
# else the milliseconds until there may be room.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local horizon = now - window
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon)
if #old > 0 then
  local freed = 0
  for _, m in ipairs(old) do freed = freed + tonumber(string.match(m, ':(-?%d+)$')) end
  redis.call('DECRBY', KEYS[3], freed)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
local wait = 0
if rpm > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local e = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
    wait = tonumber(e[2]) + window - now
  end
end
if tpm > 0 and tokens > 0 then
  if tokens > tpm then tokens = tpm end
  local need = tonumber(redis.call('GET', KEYS[3]) or '0') + tokens - tpm
  if need > 0 then
    local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local freed, at = 0, now
    if #all > 0 then at = tonumber(all[#all]) end
    for i = 1, #all, 2 do
      freed = freed + tonumber(string.match(all[i], ':(-?%d+)$'))
      if freed >= need then at = tonumber(all[i + 1]); break end
    end
    if at + window - now > wait then wait = at + window - now end
  end
end
if wait > 0 then return wait end
local id = now .. '-' .. redis.call('INCR', KEYS[4])
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], window)
end
if tpm > 0 and tokens > 0 then
  redis.call('ZADD', KEYS[2], now, id .. ':' .. tokens)
  redis.call('INCRBY', KEYS[3], tokens)
  redis.call('PEXPIRE', KEYS[2], window)
  redis.call('PEXPIRE', KEYS[3], window)
end
redis.call('PEXPIRE', KEYS[4], window)
return 0
"""

# KEYS: tokens zset, token total, sequence. ARGV: window ms, delta.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = now .. '-' .. redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], now, id .. ':' .. ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return 0
"""


class RedisLimiter:
    """The sliding window in Redis, shared by every instance on that Redis: an admission is one
    script call; the token corrections of answered requests are summed per window here and sent
    ``FLUSH`` seconds later in one round trip (so a busy instance sends a few per second, not one
    per request). If Redis fails, requests are let through (fail open) and the guard reports it:
    a limiter outage must not stop traffic."""

    def __init__(
        self, client: aioredis.Redis, guard: Guard, *, window: float = WINDOW, prefix: str = "engine:rl"
    ) -> None:
        self.window = window
        self._guard = guard
        self._prefix = prefix
        self._client = client
        self._link = Link(client)
        self._acquire = Script(_ACQUIRE)
        self._record = client.register_script(_RECORD)
        self._keys: dict[str, list[str]] = {}
        self._pending: dict[str, int] = {}  # window name -> token correction not yet sent
        self._flusher: asyncio.Task[None] | None = None

    def _keys_of(self, name: str) -> list[str]:
        keys = self._keys.get(name)
        if keys is None:
            base = f"{self._prefix}:{{{name}}}"  # one hash slot per provider (Redis Cluster)
            keys = self._keys[name] = [f"{base}:req", f"{base}:tok", f"{base}:total", f"{base}:seq"]
        return keys

    async def acquire(
        self, provider: Provider, tokens: int = 0, *, wait_until: float | None = None, key: str | None = None
    ) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        keys = self._keys_of(key or provider.name)
        args = [int(self.window * 1000), limits.rpm or 0, limits.tpm or 0, max(tokens, 0)]
        admit = partial(self._link.run, self._acquire, keys, args)
        while True:
            wait_ms = await self._guard.run("limits.acquire", admit, 0)
            if not wait_ms:
                return True
            wait = int(wait_ms) / 1000
            if wait_until is None or asyncio.get_running_loop().time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def record(
        self, provider: Provider, actual_tokens: int, estimated_tokens: int, *, key: str | None = None
    ) -> None:
        """Add ``actual - estimated`` to the window's pending correction (sent within ``FLUSH``)."""
        delta = actual_tokens - estimated_tokens
        if provider.limits is None or provider.limits.tpm is None or delta == 0:
            return
        name = key or provider.name
        pending = self._pending
        pending[name] = pending.get(name, 0) + delta
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH)
        await self.flush()

    async def flush(self) -> None:
        """Send the pending corrections now (one pipelined round trip)."""
        pending, self._pending = self._pending, {}
        pending = {name: delta for name, delta in pending.items() if delta}
        if pending:
            await self._guard.run("limits.record", lambda: self._send(pending), None)

    async def _send(self, pending: dict[str, int]) -> None:
        ms = int(self.window * 1000)
        if len(pending) == 1:  # the usual case: one script call (a pipeline adds SCRIPT EXISTS)
            [(name, delta)] = pending.items()
            _, tok, total, seq = self._keys_of(name)
            await self._record(keys=[tok, total, seq], args=[ms, delta])
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for name, delta in pending.items():
                _, tok, total, seq = self._keys_of(name)
                await self._record(keys=[tok, total, seq], args=[ms, delta], client=pipe)
            await pipe.execute()

    async def aclose(self) -> None:
        """Send what is pending (the engine's ``aclose`` waits for it)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
        await self._link.aclose()
