"""The response cache across instances on one Redis, in as few round trips as it can be: a hit is
one, a miss one on the request path (lookup and lock in one script) and one after it (store and
unlock in another, sent on the loop's next turn while the caller goes on, in one write with
the others that ended in the same turn), a follower's poll one. The two request-path
scripts go over ``redis_link`` (redis-py's connections without its pool's per-command work). A
leader's lock is a short lease its instance renews while the call runs, so a leader that dies
(SIGKILL, a lost host) lets go within ``lease`` seconds and a waiting instance takes over; no one
waits past its deadline or ``lock_ttl``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis

from engine.runtime.state.base import Entries, Guard
from engine.runtime.state.redis_link import Call, Link, Script

__all__ = ["RedisFlights"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_DOWN: Any = object()
HIT, LEAD, HELD = 1, 2, 0
BATCH_MOST = 64  # ended calls' stores sent in one write at most

# KEYS: value, lock. ARGV: token, lease ms. {1, value} on a hit; {2} when the lock is ours; {0}
# when another instance holds it.
_LOOKUP = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""

# KEYS: value, lock. ARGV: value, ttl ms (0: none), token. Stores, then lets go of our lock only.
_STORE = """
if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: lock. ARGV: token. Lets go of the lock only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock. ARGV: token, lease ms. A live leader's lease goes on.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisFlights:
    """Cross-instance single flight over the ``resp`` store (``values``: its key prefix, so the
    entries are the store's own). The instance whose lookup takes the lock calls; the others poll
    (5 ms, doubling to 100 ms) with the same script: an answer ends the wait, a lock gone without
    one (the leader failed, or died and its lease ran out) makes the poller the leader."""

    def __init__(
        self,
        client: aioredis.Redis,
        guard: Guard,
        *,
        values: str,
        locks: str,
        lock_ttl: float = 10.0,
        lease: float = 1.0,
        poll: tuple[float, float] = (0.005, 0.1),
    ) -> None:
        self.lock_ttl = lock_ttl  # the longest a follower waits on a live leader
        self.lease = lease
        self._lease_ms = str(max(int(lease * 1000), 1))
        self._guard = guard
        self._values = values
        self._locks = locks
        self._poll = poll
        self._link = Link(client)
        self._lookup, self._store, self._release = Script(_LOOKUP), Script(_STORE), Script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._client = client
        self._tokens = (f"{os.getpid()}.{os.urandom(6).hex()}.{n}" for n in itertools.count())
        self._held: dict[str, str] = {}  # lock -> token, while this instance leads
        self._settling: list[tuple[list[str], str, Any, Entries[Any]]] = []  # calls ended, not yet sent
        self._soon: asyncio.Handle | None = None  # the ended calls' stores go on the loop's next turn
        self._unsettled: set[str] = set()  # value keys of ended calls whose store Redis has not confirmed
        self._batches: set[asyncio.Future[Any]] = set()  # stores and unlocks in flight
        self._keeper: asyncio.Task[None] | None = None
        self.led = 0  # calls this instance ran under the lock
        self.followed = 0  # answers taken from another instance's call
        self.took_over = 0  # leads taken after waiting: the leader failed or died
        self.fell_back = 0  # waits that ended at ``lock_ttl`` or the deadline: called alone

    def stats(self) -> dict[str, int]:
        return {
            "led": self.led,
            "followed": self.followed,
            "took_over": self.took_over,
            "fell_back": self.fell_back,
        }

    async def run(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        entries: Entries[T],
        *,
        deadline: float | None = None,
    ) -> T:
        keys = [self._values + key, self._locks + key]
        token = next(self._tokens)
        args = [token, self._lease_ms]
        waited = False
        clock = asyncio.get_running_loop().time
        until = interval = 0.0
        lookup = partial(self._link.run, self._lookup, keys, args)
        if keys[0] in self._unsettled:
            await self.written()
        while True:
            got = await self._guard.run("flight.lookup", lookup, _DOWN)
            if got is _DOWN:  # Redis failed or is cooling down: no coordination, go on alone
                return await call()
            if got[0] == HIT:
                answer = entries.loads(got[1])
                if answer is not None:
                    self.followed += waited
                    return answer
                return await self._lead(keys, token, call, entries)  # unreadable: replace it
            if got[0] == LEAD:
                self.took_over += waited
                return await self._lead(keys, token, call, entries)
            now = clock()
            if not waited:
                waited, interval = True, self._poll[0]
                until = now + self.lock_ttl if deadline is None else min(deadline, now + self.lock_ttl)
            if now >= until:
                self.fell_back += 1
                return await call()
            await asyncio.sleep(min(interval, until - now))
            interval = min(interval * 2, self._poll[1])

    async def _lead(
        self, keys: list[str], token: str, call: Callable[[], Awaitable[T]], entries: Entries[T]
    ) -> T:
        self.led += 1
        lock = keys[1]
        self._hold(lock, token)
        answer: Any = _DOWN
        try:
            got = answer = await call()
            return got
        finally:
            del self._held[lock]
            # Not awaited: the caller has its answer; followers poll until the lock goes.
            self._settling.append((keys, token, answer, entries))
            self._unsettled.add(keys[0])
            if len(self._settling) >= BATCH_MOST:
                self._settle()
            elif self._soon is None:
                self._soon = asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        """Send the answers to store (and their locks to let go) and the locks of failed calls
        to let go, in one write, as a task ``aclose`` finishes."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        settling, self._settling = self._settling, []
        calls: list[Call] = []
        for keys, token, answer, entries in settling:
            ttl, data = entries.ttl, None
            if answer is not _DOWN and ttl is not None:
                try:
                    data = entries.dumps(answer)
                except Exception:  # not storable: nothing kept, the lock goes
                    _log.exception("flight.store: the answer could not be stored")
            if data is not None and ttl is not None:
                calls.append((self._store, keys, [data, str(max(int(ttl * 1000), 1)), token]))
            else:
                calls.append((self._release, keys[1:], [token]))
        if calls:
            send = partial(self._link.run_many, calls)
            batch = asyncio.ensure_future(self._guard.run("flight.store", send, None))
            self._batches.add(batch)
            batch.add_done_callback(partial(self._settled, [keys[0] for keys, *_ in settling]))
            self._link.later(batch)

    def _settled(self, keys: list[str], batch: asyncio.Future[Any]) -> None:
        self._batches.discard(batch)
        self._unsettled.difference_update(keys)

    async def written(self) -> None:
        """Send the ended calls' stores now and wait for them: this instance then reads what it
        wrote, and a later write of its own (a refresh) is not overwritten by an earlier one."""
        self._settle()
        while self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    def _hold(self, lock: str, token: str) -> None:
        self._held[lock] = token
        keeper = self._keeper
        if keeper is None or keeper.done():
            self._keeper = asyncio.ensure_future(self._keep())

    async def _keep(self) -> None:
        """Renew the leases this instance holds, every third of a lease, while it holds any."""
        while self._held:
            await asyncio.sleep(self.lease / 3)
            held = list(self._held.items())
            if held:
                await self._guard.run("flight.renew", partial(self._renew_all, held), None)

    async def _renew_all(self, held: list[tuple[str, str]]) -> None:
        if len(held) == 1:  # one script call (a pipeline adds SCRIPT EXISTS)
            await self._renew(keys=[held[0][0]], args=[held[0][1], self._lease_ms])
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for lock, token in held:
                await self._renew(keys=[lock], args=[token, self._lease_ms], client=pipe)
            await pipe.execute()

    async def aclose(self) -> None:
        """Send the stores and unlocks still in flight, stop renewing."""
        self._settle()
        keeper = self._keeper
        if keeper is not None and not keeper.done():
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await self._link.aclose()
