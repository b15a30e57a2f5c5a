"""A key and an upstream call in, one shared outcome out: single-flight for identical requests in
this process (followers wait for the leader's call). Every backend uses it as it is; across
instances a backend's ``Flights`` coordinates on top."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Flight", "SingleFlight"]

T = TypeVar("T")


class _LeaderGone(Exception):
    """The leader was cancelled before its call finished: a follower takes over."""


class Flight:
    """One key's call in flight: ``future`` is made when the first follower joins (so ``None``
    says that nobody waits for the outcome)."""

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
        self._flights: dict[str, Flight] = {}
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

    def lead(self, key: str) -> Flight | None:
        """The caller leads ``key``'s flight and runs the call itself (then ``land``s it), or
        ``None``: a flight is on, ``do`` joins it. What ``do`` does, without a coroutine."""
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight()
        self.started += 1
        return flight

    def land(self, key: str, flight: Flight, exc: BaseException | None, result: Any = None) -> None:
        """A ``lead``'s outcome to its followers: ``result``, or ``exc`` (a cancelled leader hands
        its call to one of them)."""
        if isinstance(exc, asyncio.CancelledError):
            exc = _LeaderGone()
        self._settle(key, flight, exc, result)

    async def _lead(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights[key] = Flight()
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

    def _settle(self, key: str, flight: Flight, exc: BaseException | None, result: Any = None) -> None:
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
