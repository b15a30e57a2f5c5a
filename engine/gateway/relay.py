"""A routed stream relayed read by read: the dialect's SSE frames of every event one network read
of the upstream carried go out as one write, before the next read is awaited (never held
longer; the last read's with the end of the stream); SSE comment pings every
``server.keepalive`` while the first frame is awaited (a timer, no task unless a ping is due);
an error before the first frame answered with its status, unless pings already went out (then,
as after the first frame, it ends the stream as the dialect's in-stream error: never a clean
end). The headers go out with the first frame (or ping): the routing headers known then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from engine.errors import RequestError, RouteError
from engine.gateway.app import Call
from engine.gateway.errors import refusal_of
from engine.gateway.routed import route_name, watching
from engine.result import Done, StreamEvent, Usage
from engine.runtime import EventStream

__all__ = ["relay"]

_log = logging.getLogger("engine.gateway")
SSE = b"text/event-stream"


async def relay(call: Call, request: dict[str, Any], tokens: int) -> None:
    """Stream ``request`` to the client; cancelled (and the upstream with it) if it leaves."""
    gw = call.gateway
    try:
        stream = gw.engine.stream(request)
    except (RequestError, RouteError) as exc:
        raise refusal_of(exc) from None
    key = call.key
    usage: list[Usage] | None = (
        [] if key is not None and key.limits is not None and key.limits.tpm is not None else None
    )
    out = _Out(call, request, stream)
    frames = call.dialect.stream(_reads(stream, out, usage), request)
    try:
        await watching(call, out.run(frames))
    finally:
        pinger = out.stop_pings()
        if pinger is not None:
            pinger.cancel()
        await frames.aclose()  # type: ignore[attr-defined]
        await stream.aclose()
    if usage:
        await gw.quota.settle(key, usage[0], tokens)


async def _reads(stream: EventStream, out: _Out, usage: list[Usage] | None) -> AsyncIterator[StreamEvent]:
    """The stream's events, read by read: the frames of one read are written before the next
    is awaited (after the ``Done``, nothing is awaited: its frames go out with the end)."""
    while True:
        batch = await stream.batch()
        if not batch:
            return
        for event in batch:
            yield event
        last = batch[-1]
        if type(last) is Done:  # (with the end marker's read: one write for both)
            if usage is not None:
                usage.append(last.usage)
            return
        await out.flush()


class _Out:
    """The response side of one stream: frames pending, the pings, whether headers went out."""

    __slots__ = ("call", "pending", "pinger", "pinging", "request", "started", "stream", "timer")

    def __init__(self, call: Call, request: dict[str, Any], stream: EventStream) -> None:
        self.call, self.request, self.stream = call, request, stream
        self.pending: list[bytes] = []
        self.started = False
        self.pinging = True
        self.timer: asyncio.TimerHandle | None = None
        self.pinger: asyncio.Task[None] | None = None

    async def run(self, frames: AsyncIterator[bytes]) -> None:
        """Relay ``frames``; an unexpected failure after the headers went out ends the stream
        with the dialect's error frame (the dialect ends a ``RouteError`` after its first frame
        itself; before any frame, it is answered with its status)."""
        call = self.call
        self.timer = asyncio.get_running_loop().call_later(call.gateway.config.keepalive, self._tick)
        pending = self.pending
        try:
            async for frame in frames:
                pending.append(frame)
        except (RequestError, RouteError) as exc:
            await self.stop_pinging()
            if not self.started:
                raise refusal_of(exc) from None
            pending.append(call.dialect.stream_error(exc))
        except Exception as exc:  # a bug
            await self.stop_pinging()
            if not self.started:
                raise
            _log.exception("engine: stream %s failed", call.rid)
            pending.append(call.dialect.stream_error(exc))
        await self.flush(end=True)

    async def flush(self, *, end: bool = False) -> None:
        """Write the pending frames as one body message (none before the first frame: pings
        go on); the headers first, with the first frame."""
        pending = self.pending
        if not pending and not end:
            return
        if self.pinging:
            await self.stop_pinging()
        if not self.started:
            await self._start()
        body = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        await self.call.send({"type": "http.response.body", "body": body, "more_body": not end})

    def _tick(self) -> None:
        self.timer = None
        self.pinger = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        call = self.call
        if not self.started:
            await self._start()
        await call.send({"type": "http.response.body", "body": call.dialect.keepalive, "more_body": True})
        if self.pinging:
            self.timer = asyncio.get_running_loop().call_later(call.gateway.config.keepalive, self._tick)

    async def stop_pinging(self) -> None:
        """No more pings; a ping being written is let finish first (its write comes first)."""
        pinger = self.stop_pings()
        if pinger is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pinger)

    def stop_pings(self) -> asyncio.Task[None] | None:
        """No more pings: the ping task still running, if any, returned."""
        self.pinging = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pinger, self.pinger = self.pinger, None
        if pinger is None:
            return None
        if not pinger.done():
            return pinger
        if not pinger.cancelled():
            pinger.exception()  # (retrieved: a failed ping shows as the next write's failure)
        return None

    async def _start(self) -> None:
        self.started = True
        call, stream = self.call, self.stream
        headers = [
            (b"x-request-id", call.rid.encode("latin-1")),
            (b"content-type", SSE),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-engine-route", route_name(call.gateway.engine.graph, self.request).encode()),
            (b"x-engine-cache", b"none"),
        ]
        target = stream.answering
        if target is not None:
            provider, _, model = target.partition("/")
            headers += [
                (b"x-engine-provider", provider.encode()),
                (b"x-engine-model", model.encode()),
                (b"x-engine-attempts", b"%d" % stream.tries),
            ]
        await call.send({"type": "http.response.start", "status": 200, "headers": headers})
