"""Helpers of the raw loopback upstreams (the ``raw`` fixture in conftest.py): read one HTTP/1.1
request off a connection, write answers byte by byte as a misbehaving server would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawRequest = tuple[str, str, dict[str, str], bytes]


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    """One HTTP/1.1 request off a connection: method, path, headers (lower-case names), body
    (``Content-Length`` only: the engine always sends sized bodies); ``None`` once the client
    has closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    first, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def head(status: int = 200, headers: Mapping[str, str] | None = None) -> bytes:
    """A status line and headers (nothing else: add ``content-length`` or
    ``transfer-encoding`` yourself)."""
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> bytes:
    """A whole sized answer (``application/json`` unless ``headers`` says otherwise)."""
    return (
        head(
            status, {"content-type": "application/json", **(headers or {}), "content-length": str(len(body))}
        )
        + body
    )


def chunk(data: bytes) -> bytes:
    """One chunk of a ``transfer-encoding: chunked`` body (``b""`` is the terminator)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
