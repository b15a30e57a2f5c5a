"""Rate limits shared on one Redis: every instance spends one quota, exactly, in few round trips.

The window lives in Redis, on the server's clock (instances with skewed clocks share it): per
limit a log of entries ``"<ms>-<seq>:<count>"`` (a sorted set scored by time) and their sum. An
instance does not ask Redis once per request: it takes a *lease* — ``n`` requests and a token
budget, admitted in one script call — and spends it locally for at most ``lease`` seconds
(``LEASE``, or a twentieth of the window when shorter). The lease is counted in Redis as if every
request of it were sent at its very end (``now + lease``), so each request sent from it falls
inside the span Redis counts it for: no ``window``-long span ever holds more than ``rpm``
requests or ``tpm`` tokens, across every instance. What a lease did not spend is given back when
it ends (one script call after the lease, off the request path), scored like the lease itself,
so both leave the window together.

A lease's size follows this instance's rate: one request at first; twice what the last lease
spent when it ran out early; what it spent when it ran to its end. It never takes more than a
sixteenth of a limit (``SHARE``), so an idle instance holds back at most that, for at most
``lease`` seconds; limits under 32 rpm get one request per lease, as without leases. A busy
instance so sends about one admission script per lease (every few hundred requests at a few
thousand per second) instead of one per request. Callers that find the lease spent wait for one
refill; a refusal tells the others how long there will be no room for what they need.

Token corrections (what an answer used minus its estimate) are summed per window and sent
``FLUSH`` seconds after the answer, with the leases given back, one script each.
If Redis fails, requests are let through (fail open) and the guard reports it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

import redis.asyncio as aioredis

from engine.graph import Provider
from engine.runtime.state.base import WINDOW, Guard
from engine.runtime.state.redis_link import Link, Script

__all__ = ["FLUSH", "LEASE", "SHARE", "RedisLimiter"]

FLUSH = 0.05  # seconds: token corrections and unspent leases reach Redis this long after, at most
LEASE = 0.5  # seconds a lease may be spent for (at most a twentieth of the window)
SHARE = 16  # a lease takes at most 1/SHARE of a limit
_MOST = 1 << 16  # requests per lease without an rpm (the token budget bounds it too)

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl = window + lease
local function count(m) return tonumber(string.match(m, ':(-?%d+)$')) or 1 end
local function add(log, sum, at, id, n)
  redis.call('ZADD', log, at, id .. ':' .. n)
  redis.call('INCRBY', sum, n)
  redis.call('PEXPIRE', log, ttl)
  redis.call('PEXPIRE', sum, ttl)
end
"""

# KEYS: requests log, requests sum, tokens log, tokens sum, sequence. ARGV: window ms, lease ms,
# rpm, tpm (0: no limit), requests wanted, tokens needed, tokens wanted. Returns {requests,
# tokens, 0, score} when admitted (a lease of that much, counted at ``score``), else
# {0, 0, ms until there may be room}.
_ACQUIRE = (
    _COMMON
    + """
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local want, need, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local horizon = now - window
local function used(log, sum)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', horizon)
  if #old > 0 then
    local freed = 0
    for _, m in ipairs(old) do freed = freed + count(m) end
    redis.call('DECRBY', sum, freed)
    redis.call('ZREMRANGEBYSCORE', log, '-inf', horizon)
  end
  return tonumber(redis.call('GET', sum) or '0')
end
local function until_room(log, short)
  local all = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
  local freed, at = 0, now
  if #all > 0 then at = tonumber(all[#all]) end
  for i = 1, #all, 2 do
    freed = freed + count(all[i])
    if freed >= short then at = tonumber(all[i + 1]); break end
  end
  return math.max(at + window - now, 1)
end
local units, tokens, wait = 0, 0, 0
if rpm > 0 then
  local room = rpm - used(KEYS[1], KEYS[2])
  if room < 1 then wait = until_room(KEYS[1], 1 - room) else units = math.min(want, room) end
end
if tpm > 0 and need > 0 then
  local room = tpm - used(KEYS[3], KEYS[4])
  if room < need then wait = math.max(wait, until_room(KEYS[3], need - room))
  else tokens = math.min(math.max(budget, need), room) end
end
if wait > 0 then return {0, 0, wait} end
local id = now .. '-' .. redis.call('INCR', KEYS[5])
local at = now + lease
if units > 0 then add(KEYS[1], KEYS[2], at, id, units) end
if tokens > 0 then add(KEYS[3], KEYS[4], at, id, tokens) end
redis.call('PEXPIRE', KEYS[5], ttl)
return {units, tokens, 0, at}
"""
)

# KEYS: as _ACQUIRE. ARGV: window ms, lease ms, score (0: the server's now), requests delta,
# tokens delta. Adds the deltas to the window at ``score``.
_RECORD = (
    _COMMON
    + """
local at = tonumber(ARGV[3])
if at == 0 then at = now end
local id = now .. '-' .. redis.call('INCR', KEYS[5])
if ARGV[4] ~= '0' then add(KEYS[1], KEYS[2], at, id, ARGV[4]) end
if ARGV[5] ~= '0' then add(KEYS[3], KEYS[4], at, id, ARGV[5]) end
redis.call('PEXPIRE', KEYS[5], ttl)
return 0
"""
)


@dataclass(slots=True, eq=False)
class _Lease:
    """What this instance may still spend of one window, until ``until`` (loop time)."""

    keys: list[str]
    units: int = 0
    tokens: int = 0
    until: float = 0.0
    at: int = 0  # the lease's score in Redis (server ms)
    used: int = 0  # requests spent from the current lease
    size: int = 1  # requests the next lease asks for
    mean: float = 0.0  # tokens per request, a running mean
    refill: asyncio.Event | None = None  # set when the refill in flight is done
    full_until: float = 0.0  # the last refill's refusal: no room for ``full_need`` tokens until then
    full_need: int = 0
    timer: asyncio.TimerHandle | None = None
    spent: bool = False  # the current lease ran out before its end
    gen: int = 0  # which lease is current (its end timer names it)

    def take(self, need: int) -> None:
        """Spend one request and ``need`` tokens."""
        self.units -= 1
        self.tokens -= need
        self.used += 1
        if need:
            self.mean += (need - self.mean) / 8


class RedisLimiter:
    """Sliding windows in Redis, spent through local leases (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis, guard: Guard, *, window: float = WINDOW, prefix: str = "engine:rl"
    ) -> None:
        self.window = window
        self._guard = guard
        self._prefix = prefix
        self._link = Link(client)
        self._acquire = Script(_ACQUIRE)
        self._record = Script(_RECORD)
        self._leases: dict[str, _Lease] = {}
        self._pending: dict[str, int] = {}  # window name -> token correction not yet sent
        self._given: list[tuple[str, int, int, int]] = []  # (name, score, requests, tokens) to give back
        self._flusher: asyncio.Task[None] | None = None
        self._sending = False  # the flusher is sending (not to be cancelled)

    def _lease_of(self, name: str) -> _Lease:
        lease = self._leases.get(name)
        if lease is None:
            base = f"{self._prefix}:{{{name}}}"  # one hash slot per window (Redis Cluster)
            keys = [f"{base}:q", f"{base}:qn", f"{base}:tok", f"{base}:total", f"{base}:seq"]
            lease = self._leases[name] = _Lease(keys)
        return lease

    @property
    def _lease_seconds(self) -> float:
        return min(LEASE, self.window / 20)

    async def acquire(
        self, provider: Provider, tokens: int = 0, *, wait_until: float | None = None, key: str | None = None
    ) -> bool:
        limits = provider.limits
        if limits is None:
            return True
        rpm, tpm = limits.rpm or 0, limits.tpm or 0
        need = min(tokens, tpm) if tpm and tokens > 0 else 0
        if not rpm and not need:
            return True
        name = key or provider.name
        lease = self._lease_of(name)
        loop = asyncio.get_running_loop()
        joined = False  # waited for another caller's refill: its refusal is fresh
        while True:
            now = loop.time()
            if now < lease.until and (not rpm or lease.units > 0) and lease.tokens >= need:
                lease.take(need)
                return True
            if lease.refill is not None:  # another caller is refilling: wait for it, then look again
                await lease.refill.wait()
                joined = True
                continue
            if joined and now < lease.full_until and need >= lease.full_need:
                wait, joined = lease.full_until - now, False
            else:
                wait = await self._refill(name, lease, rpm, tpm, need)
                if wait <= 0:  # admitted from a new lease, or Redis failed: let it through
                    return True
            if wait_until is None or loop.time() + wait > wait_until:
                return False
            await asyncio.sleep(wait)

    async def _refill(self, name: str, lease: _Lease, rpm: int, tpm: int, need: int) -> float:
        """0: a new lease, the caller's request taken from it; else the seconds until there may
        be room; -1: Redis failed (the guard reports it)."""
        self._give_back(name, lease)
        # ran out before its end: twice as much; ran to its end: what it spent
        size = min(lease.size * 2 if lease.spent else max(1, lease.used), rpm // SHARE if rpm else _MOST)
        lease.size, lease.used = max(1, size), 0
        size, budget = lease.size, need
        if need:
            budget = max(need, min(need + int((size - 1) * max(lease.mean, need)), tpm // SHARE))
        loop = asyncio.get_running_loop()
        seconds = self._lease_seconds
        args = [int(self.window * 1000), int(seconds * 1000), rpm, tpm, size, need, budget]
        lease.refill = refill = asyncio.Event()
        sent = loop.time()
        try:
            run = partial(self._link.run, self._acquire, lease.keys, args)
            reply = await self._guard.run("limits.acquire", run, None)
        finally:
            lease.refill = None
            refill.set()
        if reply is None:
            return -1.0
        units, tokens, wait_ms = int(reply[0]), int(reply[1]), int(reply[2])
        if wait_ms:
            lease.size = 1
            lease.full_until, lease.full_need = loop.time() + wait_ms / 1000, need
            return wait_ms / 1000
        lease.units, lease.tokens, lease.at = units, tokens, int(reply[3])
        lease.until = sent + seconds
        lease.full_until = 0.0
        lease.gen += 1
        lease.timer = loop.call_at(lease.until, self._expire, name, lease, lease.gen)
        lease.take(need)  # the caller's, even if the round trip outlasted the lease
        return 0.0

    def _expire(self, name: str, lease: _Lease, gen: int) -> None:
        if lease.gen == gen:
            self._give_back(name, lease)

    def _give_back(self, name: str, lease: _Lease) -> None:
        """End the current lease: what it did not spend goes back to Redis (within ``FLUSH``)."""
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        lease.spent = lease.until > asyncio.get_running_loop().time()
        units, tokens = max(lease.units, 0), max(lease.tokens, 0)
        lease.units = lease.tokens = 0
        lease.until = 0.0
        if units or tokens:
            self._given.append((name, lease.at, -units, -tokens))
            self._flush_soon()

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
        self._flush_soon()

    def _flush_soon(self) -> None:
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH)
        self._sending = True
        try:
            await self.flush()
        finally:
            self._sending = False

    async def flush(self) -> None:
        """Send the pending corrections and unspent leases now (one script call each, at once)."""
        pending, self._pending = self._pending, {}
        given, self._given = self._given, []
        sends = [(name, 0, 0, delta) for name, delta in pending.items() if delta] + given
        if sends:
            await self._guard.run("limits.record", lambda: self._send(sends), None)

    async def _send(self, sends: list[tuple[str, int, int, int]]) -> None:
        base = [int(self.window * 1000), int(self._lease_seconds * 1000)]
        run, script = self._link.run, self._record
        replies = await asyncio.gather(
            *(
                run(script, self._lease_of(name).keys, [*base, at, units, tokens])
                for name, at, units, tokens in sends
            ),
            return_exceptions=True,
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

    async def aclose(self) -> None:
        """Give back what the leases did not spend, send what is pending (the engine's ``aclose``
        waits for it)."""
        for name, lease in self._leases.items():
            self._give_back(name, lease)
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            if not self._sending:  # asleep: what it would send, flush sends now
                flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
        await self._link.aclose()
