"""A routed stream relayed event by event: the dialect's SSE frames sent as each event arrives
(never buffered), SSE comment pings every ``server.keepalive`` while the first event is awaited,
and an error before the first event answered with its status, unless pings already went out
(then, as after the first event, it ends the stream as the dialect's in-stream error: never a
clean end). The headers go out with the first frame (or ping): the routing headers known then."""

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
    usage: list[Usage] = []
    events: AsyncIterator[StreamEvent] = stream
    tpm = call.key is not None and call.key.limits is not None and call.key.limits.tpm is not None
    if tpm:
        events = _tap(stream, usage)
    frames = call.dialect.stream(events, request)
    try:
        await watching(call, _relay(call, request, stream, frames))
    finally:
        await frames.aclose()  # type: ignore[attr-defined]
        await stream.aclose()
    if tpm and usage:
        await gw.quota.settle(call.key, usage[0], tokens)


async def _tap(stream: EventStream, usage: list[Usage]) -> AsyncIterator[StreamEvent]:
    """The events, the final usage kept (for the key's tpm)."""
    async for event in stream:
        if type(event) is Done:
            usage.append(event.usage)
        yield event


async def _relay(
    call: Call, request: dict[str, Any], stream: EventStream, frames: AsyncIterator[bytes]
) -> None:
    send = call.send
    keepalive = call.gateway.config.keepalive
    first: asyncio.Task[bytes] = asyncio.ensure_future(frames.__anext__())
    started = False
    try:
        while True:
            done, _ = await asyncio.wait((first,), timeout=keepalive)
            if done:
                break
            if not started:
                await _start(call, request, stream)
                started = True
            await send({"type": "http.response.body", "body": call.dialect.keepalive, "more_body": True})
        try:
            frame: bytes | None = first.result()
        except StopAsyncIteration:
            frame = None
        except (RequestError, RouteError) as exc:
            if not started:
                raise refusal_of(exc) from None
            await _end(call, call.dialect.stream_error(exc))
            return
        if not started:
            await _start(call, request, stream)
            started = True
        if frame is not None:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await _rest(call, frames)
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(BaseException):
                await first


async def _rest(call: Call, frames: AsyncIterator[bytes]) -> None:
    """Every frame after the first, each sent as it comes; an unexpected failure ends the
    stream with the dialect's error frame."""
    send = call.send
    try:
        async for frame in frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
    except Exception as exc:  # the dialect ends RouteErrors itself; anything else is a bug
        _log.exception("engine: stream %s failed", call.rid)
        await _end(call, call.dialect.stream_error(exc))
        return
    await _end(call, b"")


async def _end(call: Call, last: bytes) -> None:
    await call.send({"type": "http.response.body", "body": last, "more_body": False})


async def _start(call: Call, request: dict[str, Any], stream: EventStream) -> None:
    headers = [
        (b"x-request-id", call.rid.encode()),
        (b"content-type", SSE),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"x-engine-route", route_name(call.gateway.engine.graph, request).encode()),
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
