"""A key and an upstream call in, one shared outcome out: single-flight for identical requests, in
this process (a task shared by every caller) and across instances (a short Redis lock).

In process, the first caller starts the call as its own task and every caller, the first included,
awaits it: its result or exception reaches all of them, and a caller that is cancelled (its deadline)
leaves the others waiting; the call is cancelled only when no caller is left. Across instances, the
instance that wins ``SET NX PX`` leads; the others poll for its cached answer until the lock goes
away, the lock times out or their deadline nears, then run the call themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, TypeVar

from engine.runtime.cache import Guard

__all__ = ["RedisFlights", "SingleFlight"]

T = TypeVar("T")

_DOWN: Any = object()

# Deletes the lock only if it still holds our token (a lock that timed out may belong to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[T]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight:
    """``await flights.do(key, fn)``: at most one ``fn()`` per key runs at a time in this process."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[Any]] = {}
        self._running: set[asyncio.Future[Any]] = set()  # includes calls being cancelled
        self.started = 0  # calls that went upstream
        self.joined = 0  # callers that shared another caller's call

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        flight: _Flight[T] | None = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(fn()))
            self._flights[key] = flight
            self._running.add(flight.task)
            flight.task.add_done_callback(partial(self._finished, key, flight))
            self.started += 1
        else:
            self.joined += 1
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError as exc:
            if not flight.task.done():  # this caller was cancelled, not the call
                flight.waiters -= 1
                if flight.waiters == 0:
                    self._forget(key, flight)  # a newcomer must not join a call being cancelled
                    flight.task.cancel(exc.args[0] if exc.args else None)  # e.g. "hedge lost"
            raise

    async def aclose(self) -> None:
        """Cancel every call still running (or still unwinding) and wait for them."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, key: str, flight: _Flight[Any], _task: asyncio.Future[Any]) -> None:
        self._running.discard(flight.task)
        self._forget(key, flight)
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved: no "exception was never retrieved" noise

    def _forget(self, key: str, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


class RedisFlights:
    """Cross-instance single-flight on one Redis: a lock per key, followers poll ``peek``."""

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
                self.led += 1
                try:
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
