"""Circuits shared on one Redis: every transition one Lua script, so it is atomic across
instances (failures counted with ``HINCRBY``, the ``threshold``-th opening the circuit once, the
half-open probe claimed by exactly one instance); every script answers the circuit as it then is,
on the server's clock turned into the caller's. Each change bumps one version key; an instance
reads it at most every ``staleness`` seconds (one round trip) and reloads its circuits only when
it moved. So a closed circuit costs no round trip per try, and a change made elsewhere reaches an
instance's view within ``staleness`` (plus one round trip) of its next try.

Keys, under ``cache.namespace``: ``<ns>:cbr:c:<circuit>`` a hash (``s`` state, ``f`` failures,
``o`` opened at, ``u`` probe lease end, ``p`` probe owner; all times in server ms) that expires
``2 x recovery + lease + 60 s`` after its last change (a closed circuit without failures has no
key), and ``<ns>:cbr:v`` the version (expires after a day without changes)."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from engine.runtime.state.base import CircuitSnapshot, CircuitState, Guard

__all__ = ["RedisCircuits"]

_DOWN: Any = object()
_STATES: dict[str, CircuitState] = {"closed": "closed", "opened": "opened", "half-opened": "half-opened"}

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function snap(key, granted)
  local h = redis.call('HMGET', key, 's', 'f', 'o', 'u')
  return {now, h[1] or 'closed', tonumber(h[2] or '0'), h[3] or '', h[4] or '', granted}
end
local function bump(expire)
  if expire then redis.call('PEXPIRE', KEYS[1], expire) end
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], 86400000)
end
"""

# KEYS: circuit, version. ARGV: threshold, expire ms.
_FAILED = (
    _PRELUDE
    + """
if (redis.call('HGET', KEYS[1], 's') or 'closed') == 'closed' then
  local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
  if f >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 's', 'opened', 'o', now, 'f', 0)
    redis.call('HDEL', KEYS[1], 'u', 'p')
  else
    redis.call('HSET', KEYS[1], 's', 'closed')
  end
  bump(ARGV[2])
end
return snap(KEYS[1], 0)
"""
)

# KEYS: circuit, version. A success on a closed circuit with failures: the count starts again.
_SUCCEEDED = (
    _PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 's', 'f')
if (h[1] or 'closed') == 'closed' and tonumber(h[2] or '0') > 0 then
  redis.call('DEL', KEYS[1])
  bump(nil)
end
return snap(KEYS[1], 0)
"""
)

# KEYS: circuit, version. ARGV: token, recovery ms, lease ms, expire ms. The probe goes to the
# first caller once the recovery has passed, or once the last probe's lease has (its owner died).
_CLAIM = (
    _PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 's', 'o', 'u')
local s, o, u = h[1] or 'closed', tonumber(h[2] or '0'), tonumber(h[3] or '0')
if (s == 'opened' and now >= o + tonumber(ARGV[2])) or (s == 'half-opened' and now >= u) then
  redis.call('HSET', KEYS[1], 's', 'half-opened', 'p', ARGV[1], 'u', now + tonumber(ARGV[3]))
  bump(ARGV[4])
  return snap(KEYS[1], 1)
end
return snap(KEYS[1], 0)
"""
)

# KEYS: circuit, version. ARGV: token, ok (1|0), expire ms. Only the probe's owner settles it.
_SETTLE = (
    _PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 's', 'p')
if h[1] == 'half-opened' and h[2] == ARGV[1] then
  if ARGV[2] == '1' then
    redis.call('DEL', KEYS[1])
    bump(nil)
  else
    redis.call('HSET', KEYS[1], 's', 'opened', 'o', now, 'f', 0)
    redis.call('HDEL', KEYS[1], 'u', 'p')
    bump(ARGV[3])
  end
end
return snap(KEYS[1], 0)
"""
)

# KEYS: version, circuits... ARGV: the version last seen ('' if none). {version} when it has not
# moved, else {version, now, then state, failures, opened at, lease end of each circuit}.
_READ = """
local v = redis.call('GET', KEYS[1]) or '0'
if v == ARGV[1] then return {v} end
local t = redis.call('TIME')
local out = {v, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 's', 'f', 'o', 'u')
  table.insert(out, h[1] or 'closed')
  table.insert(out, tonumber(h[2] or '0'))
  table.insert(out, h[3] or '')
  table.insert(out, h[4] or '')
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _local(value: Any, offset: float) -> float | None:
    """A server time in ms (``b''``: none) on this process's ``time.time()`` clock."""
    return int(value) / 1000 + offset if value not in (b"", "", None) else None


def _snapshot(now_ms: Any, fields: list[Any], granted: Any = 0) -> CircuitSnapshot:
    offset = time.time() - int(now_ms) / 1000
    state, failures, opened, until = fields
    return CircuitSnapshot(
        _STATES.get(_text(state), "closed"),
        int(failures),
        _local(opened, offset),
        _local(until, offset),
        bool(granted),
    )


class RedisCircuits:
    """``SharedCircuits`` on this backend's client, keys under ``prefix`` (the namespace), every
    call through the guard (``None`` while Redis is down or skipped)."""

    def __init__(self, client: aioredis.Redis, guard: Guard, prefix: str, *, staleness: float = 0.5) -> None:
        self.staleness = staleness
        self._guard = guard
        self._circuit = f"{prefix}cbr:c:"
        self._version_key = f"{prefix}cbr:v"
        self._failed = client.register_script(_FAILED)
        self._succeeded = client.register_script(_SUCCEEDED)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._read = client.register_script(_READ)

    def _keys(self, key: str) -> list[str]:
        return [self._circuit + key, self._version_key]

    async def _one(self, op: str, script: Any, key: str, args: list[Any]) -> CircuitSnapshot | None:
        keys = self._keys(key)
        got = await self._guard.run(op, lambda: script(keys=keys, args=args), _DOWN)
        if got is _DOWN:
            return None
        return _snapshot(got[0], got[1:5], got[5])

    async def failed(self, key: str, threshold: int, ttl: float) -> CircuitSnapshot | None:
        return await self._one("breakers.failed", self._failed, key, [threshold, _expire(ttl)])

    async def succeeded(self, key: str) -> CircuitSnapshot | None:
        return await self._one("breakers.succeeded", self._succeeded, key, [])

    async def claim(self, key: str, token: str, ttl: float, lease: float) -> CircuitSnapshot | None:
        args = [token, int(ttl * 1000), int(lease * 1000), _expire(ttl, lease)]
        return await self._one("breakers.claim", self._claim, key, args)

    async def settle(self, key: str, token: str, ok: bool, ttl: float) -> CircuitSnapshot | None:
        return await self._one("breakers.settle", self._settle, key, [token, int(ok), _expire(ttl)])

    async def read(self, keys: list[str], seen: str = "") -> tuple[str, dict[str, CircuitSnapshot]] | None:
        """One round trip: the version, and the circuits named unless it is still ``seen``."""
        all_keys = [self._version_key, *(self._circuit + k for k in keys)]
        got = await self._guard.run("breakers.read", lambda: self._read(keys=all_keys, args=[seen]), _DOWN)
        if got is _DOWN:
            return None
        version = _text(got[0])
        if len(got) == 1:
            return version, {}
        now_ms, rows = got[1], got[2:]
        return version, {k: _snapshot(now_ms, rows[4 * i : 4 * i + 4]) for i, k in enumerate(keys)}


def _expire(ttl: float, lease: float = 0.0) -> int:
    """How long a circuit's key outlives its last change, in ms."""
    return int((2 * ttl + lease + 60) * 1000)
