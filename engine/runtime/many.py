"""RouteMany requests in, each one's outcome out as it finishes: ``(index, Response | error)`` pairs
from ``Engine.route_many``, at most ``concurrency`` requests in flight. Each request is routed as
``route()`` routes one (its route's deadline, rate limits, circuits, failover), so one failure
never stops the others: a ``RouteError`` (or ``RequestError``, for a malformed request) is
handed out in its place. Closing the iterator (``aclose()``, leaving its ``async with``, or
cancelling the task reading it) cancels the requests still in flight and starts no more.

``SyncRouteMany`` is the blocking twin, read on the engine's loop thread (``SyncEngine.route_many``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeAlias

from engine.errors import RequestError, RouteError
from engine.result import Response
from engine.runtime.loop import LoopThread, outside_loop

__all__ = ["ManyResult", "RouteMany", "SyncRouteMany"]

ManyResult: TypeAlias = Response | RouteError | RequestError
Route = Callable[[Any], Awaitable[Response]]


class RouteMany:
    """``async for index, outcome in engine.route_many(requests, concurrency=N)``; also an async
    context manager whose exit cancels what is still in flight."""

    __slots__ = ("_gen",)

    def __init__(self, route: Route, requests: Iterable[Any] | AsyncIterable[Any], concurrency: int) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number of at least 1, got {concurrency!r}")
        self._gen = _run(route, requests, concurrency)

    def __aiter__(self) -> RouteMany:
        return self

    async def __anext__(self) -> tuple[int, ManyResult]:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Cancel the requests in flight (and wait for them to unwind); start no more."""
        await self._gen.aclose()

    async def __aenter__(self) -> RouteMany:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _numbered(requests: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[tuple[int, Any]]:
    if isinstance(requests, AsyncIterable):
        i = 0
        async for request in requests:
            yield i, request
            i += 1
    else:
        for pair in enumerate(requests):
            yield pair


async def _one(route: Route, request: Any) -> ManyResult:
    try:
        return await route(request)
    except (RouteError, RequestError) as exc:
        return exc


async def _run(
    route: Route, requests: Iterable[Any] | AsyncIterable[Any], concurrency: int
) -> AsyncGenerator[tuple[int, ManyResult]]:
    """Keep ``concurrency`` requests in flight, reading ``requests`` only as room frees up;
    hand out each outcome as it lands (the lower index first among those landing together)."""
    source = _numbered(requests)
    pending: dict[asyncio.Future[ManyResult], int] = {}
    more = True
    try:
        while True:
            while more and len(pending) < concurrency:
                try:
                    i, request = await anext(source)
                except StopAsyncIteration:
                    more = False
                    break
                pending[asyncio.ensure_future(_one(route, request))] = i
            if not pending:
                return
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=pending.__getitem__):
                yield pending.pop(task), task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await source.aclose()


class SyncRouteMany:
    """``for index, outcome in sync_engine.route_many(requests, concurrency=N)``: ``RouteMany`` read
    on the engine's loop thread, where the requests keep running between reads. A context
    manager; ``close()`` cancels what is still in flight."""

    __slots__ = ("_closed", "_many", "_thread")

    def __init__(self, many: RouteMany, thread: LoopThread) -> None:
        self._many, self._thread, self._closed = many, thread, False

    def __iter__(self) -> Iterator[tuple[int, ManyResult]]:
        return self

    def __next__(self) -> tuple[int, ManyResult]:
        if self._closed:
            raise StopIteration
        outside_loop("route_many()", "engine.route_many() with async for")
        future = asyncio.run_coroutine_threadsafe(self._many.__anext__(), self._thread.loop)
        try:
            return future.result()
        except StopAsyncIteration:
            self._closed = True
            raise StopIteration from None
        except BaseException:  # a route_many bug, or Ctrl-C here: what is in flight is cancelled
            self._closed = True
            future.cancel()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._thread.run(self._many.aclose())

    def __del__(self) -> None:  # dropped unclosed (a break out of the for): cancel the rest
        if not self._closed and not self._thread.loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._many.aclose(), self._thread.loop)

    def __enter__(self) -> SyncRouteMany:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
