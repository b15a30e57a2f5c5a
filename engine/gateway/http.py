"""The ASGI side of one exchange: the request's headers and body in (the body limit enforced
while it is read), status, headers and bodies out, and the client's disconnect as an event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from engine.runtime.deadline import Deadline

__all__ = [
    "BODY_TIMEOUT",
    "Receive",
    "Scope",
    "Send",
    "TooLarge",
    "TooSlow",
    "header_map",
    "read_body",
    "send_bytes",
    "start",
    "watch_disconnect",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class TooLarge(Exception):
    """The request body passed the limit (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than {limit} bytes")


BODY_TIMEOUT = 60.0  # seconds a request body may take to arrive whole once its headers did


class TooSlow(Exception):
    """The request body did not arrive whole within ``BODY_TIMEOUT`` (a stalled client, or a
    content-length longer than the body it sent)."""

    def __init__(self) -> None:
        super().__init__(f"the request body did not arrive within {BODY_TIMEOUT:g}s")


class Disconnected(Exception):
    """The client went away before its request was read whole."""


def header_map(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased (ASGI already does), values decoded latin-1; a
    repeated header keeps its last value."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole body, refused with ``TooLarge`` as soon as more than ``limit`` bytes were
    declared (content-length) or received: a larger body is never held in memory; ``TooSlow``
    when it is not all there within ``BODY_TIMEOUT``."""
    if declared is not None and declared > limit:
        raise TooLarge(limit)
    loop = asyncio.get_running_loop()
    try:
        with Deadline(loop, loop.time() + BODY_TIMEOUT):
            return await _read(receive, limit)
    except TimeoutError:
        raise TooSlow from None


async def _read(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise TooLarge(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes, headers: Headers) -> None:
    """A whole answer: status, headers (content-type and -length added) and body."""
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def watch_disconnect(receive: Receive, task: asyncio.Task[Any]) -> asyncio.Task[None]:
    """A task that cancels ``task`` when the client disconnects (the body was read already, so
    the next ASGI message is the disconnect, or nothing until the response is complete)."""

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    return asyncio.get_running_loop().create_task(watch())
