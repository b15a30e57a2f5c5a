"""A key and an upstream call in, one shared outcome out: single-flight for identical requests, in
this process (followers wait for the leader's call) and across instances (a short Redis lock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from engine.runtime.cache import Guard

__all__ = ["RedisFlights", "SingleFlight"]

T = TypeVar("T")

_DOWN: Any = object()

# Deletes the lock only if it still holds our token (a lock that timed out may belong to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _LeaderGone(Exception):
    """The leader was cancelled before its call finished: a follower takes over."""


class _Flight:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None  # made when the first follower joins


class SingleFlight:
    """``await flights.do(key, fn)``: at most one ``fn()`` per key runs at a time in this process.

    The first caller (the leader) runs ``fn()`` in its own task, so its deadline, cancellation and
    context apply as if there were no coalescing, and a lone caller pays no task or future. Callers
    that arrive meanwhile wait for the leader's outcome: its result, or its exception. If the leader
    is cancelled (deadline, hedge lost), the waiting callers are not stranded: one of them becomes
    the new leader and calls ``fn()`` again, the others wait for it.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _Flight] = {}
        self.started = 0  # calls that went upstream
        self.joined = 0  # callers that waited for another caller's call

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn)
            self.joined += 1
            if flight.future is None:
                flight.future = asyncio.get_running_loop().create_future()
            try:
                result: T = await asyncio.shield(flight.future)
                return result
            except _LeaderGone:
                continue

    async def _lead(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights[key] = _Flight()
        self.started += 1
        try:
            result = await fn()
        except asyncio.CancelledError:
            self._settle(key, flight, _LeaderGone())
            raise
        except BaseException as exc:
            self._settle(key, flight, exc)
            raise
        self._settle(key, flight, None, result)
        return result

    def _settle(self, key: str, flight: _Flight, exc: BaseException | None,
                result: Any = None) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        fut = flight.future
        if fut is None or fut.done():
            return
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
            fut.exception()  # marked retrieved: followers may all have gone (no log noise)


class RedisFlights:
    """Cross-instance single-flight on one Redis: the instance that wins ``SET NX PX`` on the key's
    lock calls; the others poll ``peek`` for its stored answer until the lock goes away (then
    they try to lead), the lock times out or their deadline comes (then they call on their own)."""

    def __init__(self, client: Any, guard: Guard, *, lock_ttl: float = 10.0,
                 poll: tuple[float, float] = (0.005, 0.1), prefix: str = "engine:flight") -> None:
        self.lock_ttl = lock_ttl
        self._client = client
        self._guard = guard
        self._poll = poll
        self._prefix = prefix
        self._release = client.register_script(_RELEASE)
        self.led = 0  # calls this instance ran under the lock
        self.followed = 0  # answers taken from another instance's call
        self.fell_back = 0  # waits that ended without an answer (lock timeout, leader failed)

    async def run(self, key: str, call: Callable[[], Awaitable[T]],
                  peek: Callable[[], Awaitable[T | None]], *, deadline: float | None = None) -> T:
        """``call()`` under the lock, or the peer's answer from ``peek()``. ``call`` must store its
        answer where ``peek`` finds it. ``deadline`` is an event-loop time (``loop.time()``)."""
        lock = f"{self._prefix}:{key}"
        token = uuid.uuid4().hex
        clock = asyncio.get_running_loop().time
        while True:
            now = clock()
            ttl = self.lock_ttl if deadline is None else max(min(self.lock_ttl, deadline - now), 0.001)
            got = await self._guard.run("flight.lock", partial(
                self._client.set, lock, token, nx=True, px=max(int(ttl * 1000), 1)), _DOWN)
            if got is _DOWN:  # Redis failed or is cooling down: no coordination, go on alone
                return await call()
            if got:
                try:
                    # the previous leader may have stored its answer and let go just before us
                    answer = await peek()
                    if answer is not None:
                        self.followed += 1
                        return answer
                    self.led += 1
                    return await call()
                finally:
                    await self._guard.run(
                        "flight.unlock", lambda: self._release(keys=[lock], args=[token]), None)
            answer, timed_out = await self._follow(lock, peek, now + ttl, clock)
            if answer is not None:
                self.followed += 1
                return answer
            self.fell_back += 1
            if timed_out or (deadline is not None and clock() >= deadline):
                return await call()
            # the lock went away without an answer (leader failed or answer not cacheable): retry

    async def _follow(self, lock: str, peek: Callable[[], Awaitable[T | None]], until: float,
                      clock: Callable[[], float]) -> tuple[T | None, bool]:
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
