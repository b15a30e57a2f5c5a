"""The connection count each built-in backend keeps (``in_use``, through aiohttp's public
``Connection.add_callback``): one while a stream is open, none once it is done or abandoned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.fake import FakeServer
from engine.result import TextDelta

ONE = """\
version: 1
defaults: {retry: never, breaker: none, deadline: 5s}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: sk-a, models: {m: {}}}
routes:
  - match: {}
    to: a/m
"""


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_in_use_counts_an_open_stream_until_it_ends(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., Any], transport: str
) -> None:
    eng = make(ONE, transport=transport)
    fake.program("/a/", ["chunk_delay=20ms"])
    conn = next(iter(eng._core.runtime.connections))
    async with eng.stream(ask("m", "one two three four five")) as stream:
        async for event in stream:
            assert isinstance(event, TextDelta)
            assert conn._backend.in_use() == 1  # type: ignore[union-attr]
            break
    assert conn._backend.in_use() == 0  # type: ignore[union-attr]
    resp = await eng.route(ask("m", "again"))
    assert resp.text == "echo: again"
    assert conn._backend.in_use() == 0  # type: ignore[union-attr]
