"""Fixtures of the runtime tests alone: ``raw``, small asyncio socket servers for the misbehaviour
the fake cannot produce (each connection handled by the test's own coroutine). The fake provider,
``make``, ``ask``, ``base``, ``settled`` and ``loop_lag`` come from tests/conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from rawhttp import Handler


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """``url = await raw(handler)``: a loopback server whose every connection is
    ``handler(reader, writer)``; handlers still running at the end of the test are cancelled."""
    servers: list[asyncio.Server] = []
    running: set[asyncio.Task[Any]] = set()

    def start(handler: Handler) -> Awaitable[str]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # the client hung up, or the test ended
            finally:
                running.discard(task)
                writer.close()

        async def go() -> str:
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            servers.append(server)
            return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        return go()

    yield start
    for server in servers:
        server.close()
    for task in list(running):
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    for server in servers:
        await server.wait_closed()
