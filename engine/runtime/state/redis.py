"""The shared backend (``cache.backend: redis://``, ``rediss://``, ``unix://``): one client this
module owns, behind the guard (fail soft, one warning per outage), serving every piece of state.

- values: aiocache's ``RedisCache`` (JSON) per namespace, on this client's connection pool;
- limits: one Lua script per operation, on the server's clock, so instances share one quota;
- single-flight across instances: a short ``SET NX PX`` lock, followers poll for the answer;
- circuits: a purgatory unit of work whose repository is this client, keys under the namespace.

Foreign libraries through their public APIs only. aiocache 0.12 builds its client from host and
port; its ``connection_pool_class`` argument hands it this client's pool instead (its timeouts,
retry policy and TLS, one pool closed by ``aclose``). purgatory's Redis unit of work takes only a
URL; the circuits go through its documented extension point instead: a unit of work subclassing
``AsyncAbstractUnitOfWork`` with a repository subclassing ``AsyncAbstractRepository``. purgatory
exports the latter only from ``purgatory.service._async.repository`` (where its documentation
places it): that import path is the one contact with a module purgatory marks private. Keys and
values stay those of purgatory's own Redis repository (``cbr::<name>``, JSON, a failure counter).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiocache import RedisCache
from purgatory import AsyncAbstractUnitOfWork
from purgatory.domain.messages import Message
from purgatory.domain.model import Context
from purgatory.service._async.repository import AsyncAbstractRepository
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.graph import Provider
from engine.runtime.state.base import WINDOW, Guard

__all__ = ["RedisBackend", "RedisCircuits", "RedisFlights", "RedisLimiter", "RedisStore", "redis_client"]

T = TypeVar("T")
_DOWN: Any = object()
SCHEMES = ("redis://", "rediss://", "unix://")


def redis_client(url: str, *, timeout: float = 0.25) -> aioredis.Redis:
    """A client for ``redis://`` / ``rediss://`` URLs with short socket timeouts and one immediate
    reconnect (redis-py's default backs off and retries three times)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
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
        self, url: str, namespace: str, guard: Guard, *, window: float = WINDOW, lock_ttl: float = 10.0
    ) -> None:
        try:
            self.client = redis_client(url, timeout=guard.timeout)
        except ValueError as exc:  # redis-py's message may quote the URL
            raise ValueError(f"cache.backend: {guard.scrub(str(exc))}") from None
        self.namespace = namespace
        self.guard = guard
        self.limiter = RedisLimiter(self.client, guard, window=window, prefix=f"{namespace}:rl")
        self.flights = RedisFlights(self.client, guard, lock_ttl=lock_ttl, prefix=f"{namespace}:flight")

    def store(self, namespace: str) -> RedisStore:
        return RedisStore(self.client, f"{self.namespace}:{namespace}", self.guard)

    def circuits(self) -> RedisCircuits:
        return RedisCircuits(self.client, self.guard, f"{self.namespace}:")

    async def ping(self) -> bool:
        client = self.client
        return bool(await self.guard.run("ping", lambda: client.ping(), False))

    async def aclose(self) -> None:
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
    """The sliding window in Redis, shared by every instance on that Redis. If Redis fails,
    requests are let through (fail open) and the guard reports it: a limiter outage must not
    stop traffic."""

    def __init__(
        self, client: aioredis.Redis, guard: Guard, *, window: float = WINDOW, prefix: str = "engine:rl"
    ) -> None:
        self.window = window
        self._guard = guard
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}:{{{name}}}"  # one hash slot per provider (Redis Cluster)
        return [f"{base}:req", f"{base}:tok", f"{base}:total", f"{base}:seq"]

    async def acquire(
        self, provider: Provider, tokens: int = 0, *, wait_until: float | None = None, key: str | None = None
    ) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        keys = self._keys(key or provider.name)
        args = [int(self.window * 1000), limits.rpm or 0, limits.tpm or 0, max(tokens, 0)]
        while True:
            wait_ms = await self._guard.run("limits.acquire", lambda: self._acquire(keys=keys, args=args), 0)
            if not wait_ms:
                return True
            wait = int(wait_ms) / 1000
            if wait_until is None or asyncio.get_running_loop().time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def record(
        self, provider: Provider, actual_tokens: int, estimated_tokens: int, *, key: str | None = None
    ) -> None:
        delta = actual_tokens - estimated_tokens
        if provider.limits is None or provider.limits.tpm is None or delta == 0:
            return
        _, tok, total, seq = self._keys(key or provider.name)
        args = [int(self.window * 1000), delta]
        await self._guard.run("limits.record", lambda: self._record(keys=[tok, total, seq], args=args), None)


# Deletes the lock only if it still holds our token (a lock that timed out may belong to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisFlights:
    """Cross-instance single-flight on one Redis: the instance that wins ``SET NX PX`` on the key's
    lock calls; the others poll ``peek`` for its stored answer until the lock goes away (then
    they try to lead), the lock times out or their deadline comes (then they call on their own)."""

    def __init__(
        self,
        client: aioredis.Redis,
        guard: Guard,
        *,
        lock_ttl: float = 10.0,
        poll: tuple[float, float] = (0.005, 0.1),
        prefix: str = "engine:flight",
    ) -> None:
        self.lock_ttl = lock_ttl
        self._client = client
        self._guard = guard
        self._poll = poll
        self._prefix = prefix
        self._release = client.register_script(_RELEASE)
        self.led = 0  # calls this instance ran under the lock
        self.followed = 0  # answers taken from another instance's call
        self.fell_back = 0  # waits that ended without an answer (lock timeout, leader failed)

    def stats(self) -> dict[str, int]:
        return {"led": self.led, "followed": self.followed, "fell_back": self.fell_back}

    async def run(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        peek: Callable[[], Awaitable[T | None]],
        *,
        deadline: float | None = None,
    ) -> T:
        lock = f"{self._prefix}:{key}"
        token = uuid.uuid4().hex
        clock = asyncio.get_running_loop().time
        while True:
            now = clock()
            ttl = self.lock_ttl if deadline is None else max(min(self.lock_ttl, deadline - now), 0.001)
            got = await self._guard.run(
                "flight.lock",
                partial(self._client.set, lock, token, nx=True, px=max(int(ttl * 1000), 1)),
                _DOWN,
            )
            if got is _DOWN:  # Redis failed or is cooling down: no coordination, go on alone
                return await call()
            if got:
                return await self._lead(lock, token, call, peek)
            answer, timed_out = await self._follow(lock, peek, now + ttl, clock)
            if answer is not None:
                self.followed += 1
                return answer
            self.fell_back += 1
            if timed_out or (deadline is not None and clock() >= deadline):
                return await call()
            # the lock went away without an answer (leader failed or answer not cacheable): retry

    async def _lead(
        self, lock: str, token: str, call: Callable[[], Awaitable[T]], peek: Callable[[], Awaitable[T | None]]
    ) -> T:
        try:
            # the previous leader may have stored its answer and let go just before us
            answer = await peek()
            if answer is not None:
                self.followed += 1
                return answer
            self.led += 1
            return await call()
        finally:
            await self._guard.run("flight.unlock", lambda: self._release(keys=[lock], args=[token]), None)

    async def _follow(
        self, lock: str, peek: Callable[[], Awaitable[T | None]], until: float, clock: Callable[[], float]
    ) -> tuple[T | None, bool]:
        """(answer, False) when the leader's answer appears; (None, False) when the lock goes away
        without one; (None, True) at ``until``."""
        interval, cap = self._poll
        while True:
            left = until - clock()
            if left <= 0:
                return None, True
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 2, cap)
            answer = await peek()
            if answer is not None:
                return answer, False
            held = await self._guard.run("flight.poll", lambda: self._client.exists(lock), None)
            if held is None:  # Redis went away while we waited
                return None, True
            if not held:
                return await peek(), False


class RedisCircuits(AsyncAbstractUnitOfWork):
    """purgatory's unit of work on this backend's client: a circuit opened by one instance is
    open for all. No transactions (purgatory's own Redis unit of work has none either)."""

    def __init__(self, client: aioredis.Redis, guard: Guard, prefix: str) -> None:
        self.contexts = _CircuitRepository(client, guard, prefix)

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None


class _CircuitRepository(AsyncAbstractRepository):
    """Circuits as purgatory's Redis repository keeps them, through the guard and under the
    namespace; every operation raises ``ConnectionError`` while Redis is down or skipped (the
    breakers then let tries through unguarded)."""

    def __init__(self, client: aioredis.Redis, guard: Guard, prefix: str) -> None:
        self.messages: list[Message] = []
        self._client = client
        self._guard = guard
        self._prefix = f"{prefix}cbr::"

    async def _run(self, op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        result = await self._guard.run(op, fn, _DOWN)
        if result is _DOWN:
            raise ConnectionError("shared state unavailable (Redis)")
        return result

    async def get(self, name: str) -> Context | None:
        key = self._prefix + name
        data = await self._run("breakers.get", lambda: self._client.get(key))
        if not data:
            return None
        fields = json.loads(data)
        failures = await self._run("breakers.get", lambda: self._client.get(f"{key}::failure_count"))
        if failures:
            fields["failure_count"] = int(failures)
        return Context(**fields)

    async def register(self, context: Context) -> None:
        data = json.dumps(
            {
                "name": context.name,
                "threshold": context.threshold,
                "ttl": context.ttl,
                "state": context.state,
                "opened_at": context.opened_at,
            }
        )
        await self._run("breakers.set", lambda: self._client.set(self._prefix + context.name, data))

    async def update_state(self, name: str, state: str, opened_at: float | None) -> None:
        key = self._prefix + name
        data = await self._run("breakers.get", lambda: self._client.get(key))
        fields = json.loads(data or "{}")
        fields.update(state=state, opened_at=opened_at)
        await self._run("breakers.set", lambda: self._client.set(key, json.dumps(fields)))

    async def inc_failures(self, name: str, failure_count: int) -> None:
        key = f"{self._prefix}{name}::failure_count"
        await self._run("breakers.incr", lambda: self._client.incr(key))

    async def reset_failure(self, name: str) -> None:
        key = f"{self._prefix}{name}::failure_count"
        await self._run("breakers.set", lambda: self._client.set(key, "0"))
