"""The synchronous API's machinery: an event loop on a daemon thread (uvloop when installed) that
runs the engine's coroutines for blocking callers, and a stream read from it as an iterator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from engine.result import StreamEvent
from engine.runtime.streaming import EventStream

__all__ = ["LoopThread", "SyncStream", "outside_loop"]

T = TypeVar("T")


def outside_loop(call: str, instead: str) -> None:
    """Refuse a blocking ``call`` where an event loop runs (it would stall it): ``instead``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{call} inside a running event loop; use {instead}")


class LoopThread:
    """An event loop on a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        try:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is optional
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("the engine's sync API was called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the loop's thread (where the runtime's counters live)."""

        async def on_loop() -> T:
            return fn()

        return self.run(on_loop())

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def stop(self) -> None:
        loop = self.loop
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(5)
        loop.close()


class SyncStream:
    """``for event in engine.stream(request)``: an ``EventStream`` read on the sync loop's thread,
    one hop per network read (its events are handed out from a buffer). Also a context manager;
    ``close()`` releases the upstream response, as does dropping it unclosed."""

    __slots__ = ("_buffer", "_closed", "_stream", "_thread")

    def __init__(self, stream: EventStream, thread: LoopThread) -> None:
        self._stream = stream
        self._thread = thread
        self._buffer: list[StreamEvent] = []  # the rest of the last read's events, reversed
        self._closed = False

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        buffer = self._buffer
        if not buffer:
            if self._closed:
                raise StopIteration
            try:
                batch = self._thread.run(self._stream.batch())
            except BaseException:
                self._closed = True  # the stream closed itself on its way out
                raise
            if not batch:
                self._closed = True
                raise StopIteration
            batch.reverse()
            buffer = self._buffer = batch
        return buffer.pop()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._buffer = []
            self._thread.run(self._stream.aclose())

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed and not self._thread.loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._stream.aclose(), self._thread.loop)
