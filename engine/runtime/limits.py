"""A provider, a token estimate and a deadline in, a go/no-go out: client-side ``rpm``/``tpm`` limits
over a sliding window, in process or in Redis (one Lua script, so instances share one quota)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from engine.graph import Limits, Provider
from engine.runtime.cache import Guard

__all__ = ["MemoryLimiter", "RateLimiter", "RedisLimiter", "estimate_tokens"]

WINDOW = 60.0  # seconds: rpm and tpm are per minute


class RateLimiter(Protocol):
    """The window is exact: no ``window``-long span admits more than ``rpm`` requests or more than
    ``tpm`` tokens (estimated at ``acquire``, corrected by ``record``). ``acquire`` waits until
    the window has room if ``wait_until`` allows it, else answers ``False`` at once (fail over)."""

    async def acquire(self, provider: Provider, tokens: int = 0, *,
                      wait_until: float | None = None, key: str | None = None) -> bool:
        """Take one request and ``tokens`` from ``provider``'s window. ``wait_until`` is an
        event-loop time (``loop.time()``, the clock of ``asyncio.timeout_at``): wait up to then
        for room; ``None``: do not wait. ``key`` names the window (default: the provider's
        name; the engine adds its endpoint's identity, so deployments with another endpoint or
        key never share a quota)."""
        ...

    async def record(self, provider: Provider, actual_tokens: int, estimated_tokens: int, *,
                     key: str | None = None) -> None:
        """Correct the token count of an admitted request by ``actual - estimated``."""
        ...


def estimate_tokens(request: Mapping[str, Any], default_output: int = 256) -> int:
    """A cheap upper-ish estimate of a request's tokens: text characters / 4, plus ``max_tokens``
    (or ``default_output``) for the answer, as providers count both against tpm."""
    chars = len(request.get("system") or "")
    for m in request.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
    out = request.get("max_tokens")
    return chars // 4 + 1 + (out if isinstance(out, int) and out > 0 else default_output)


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

    async def acquire(self, provider: Provider, tokens: int = 0, *,
                      wait_until: float | None = None, key: str | None = None) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        name = key or provider.name
        w = self._windows.get(name)
        if w is None:
            w = self._windows[name] = _Window()
        while True:
            now = time.monotonic()
            wait = self._admit(w, limits, tokens, now)
            if wait <= 0:
                return True
            if wait_until is None or asyncio.get_running_loop().time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def record(self, provider: Provider, actual_tokens: int, estimated_tokens: int, *,
                     key: str | None = None) -> None:
        w = self._windows.get(key or provider.name)
        delta = actual_tokens - estimated_tokens
        if w is None or provider.limits is None or provider.limits.tpm is None or delta == 0:
            return
        w.tokens.append((time.monotonic(), delta))
        w.total += delta

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
            need = w.total + tokens - tpm
            if need > 0:
                freed, at = 0, w.tokens[-1][0] if w.tokens else now
                for ts, n in w.tokens:
                    freed += n
                    if freed >= need:
                        at = ts
                        break
                wait = max(wait, at + self.window - now)
        if wait > 0:
            return wait
        if rpm is not None:
            w.requests.append(now)
        if tpm is not None and tokens > 0:
            w.tokens.append((now, tokens))
            w.total += tokens
        return 0.0


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
    """The same window in Redis, shared by every instance on that Redis. If Redis fails, requests
    are let through (fail open) and the guard reports it: a limiter outage must not stop traffic."""

    def __init__(self, client: Any, guard: Guard, *, window: float = WINDOW,
                 prefix: str = "engine:rl") -> None:
        self.window = window
        self._guard = guard
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}:{{{name}}}"  # one hash slot per provider (Redis Cluster)
        return [f"{base}:req", f"{base}:tok", f"{base}:total", f"{base}:seq"]

    async def acquire(self, provider: Provider, tokens: int = 0, *,
                      wait_until: float | None = None, key: str | None = None) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        keys = self._keys(key or provider.name)
        args = [int(self.window * 1000), limits.rpm or 0, limits.tpm or 0, max(tokens, 0)]
        while True:
            wait_ms = await self._guard.run("limits.acquire",
                                            lambda: self._acquire(keys=keys, args=args), 0)
            if not wait_ms:
                return True
            wait = int(wait_ms) / 1000
            if wait_until is None or asyncio.get_running_loop().time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def record(self, provider: Provider, actual_tokens: int, estimated_tokens: int, *,
                     key: str | None = None) -> None:
        delta = actual_tokens - estimated_tokens
        if provider.limits is None or provider.limits.tpm is None or delta == 0:
            return
        _, tok, total, seq = self._keys(key or provider.name)
        args = [int(self.window * 1000), delta]
        await self._guard.run("limits.record",
                              lambda: self._record(keys=[tok, total, seq], args=args), None)
