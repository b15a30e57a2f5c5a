"""Fixtures for the runtime tests: the fake provider on a loopback thread (one per session, reset
for every test), ``make`` which compiles a routes.yaml text pointing at it into an Engine that
is closed after the test, and ``raw``: small asyncio socket servers for the misbehaviour the fake
cannot produce (each connection handled by the test's own coroutine)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from rawhttp import Handler

from engine.api import Engine
from engine.compiler import compile_text
from engine.fake import FakeServer
from engine.graph import RoutingGraph

# Three openai-kind providers (a, b, c: each its own path prefix, so the fake can be programmed per
# provider) and one of each other kind. Fast timeouts, short backoff, no breakers unless a test
# adds them: tests mutate this text.
BASE = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 2, backoff: {base: 10ms, factor: 2, max: 40ms}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456,
      models: {m: {price: {input: 1.0, output: 2.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-123456, models: {m: {}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: key-c-123456, models: {m: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-3-5-haiku-latest: {price: {input: 0.8, output: 4.0}}}}
  gem: {kind: gemini, base_url: "{fake}/gem", api_key: key-gem-1, models: {gemini-1.5-flash: {}}}
  oll: {kind: ollama, base_url: "{fake}/oll", models: {llama3.2: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m, c/m]}
routes:
  - match: {model: g}
    to: g
  - match: {model: anth}
    to: anth/claude-3-5-haiku-latest
  - match: {model: gem}
    to: gem/gemini-1.5-flash
  - match: {model: oll}
    to: oll/llama3.2
  - match: {}
    to: a
"""


def _ask(model: str = "g", text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def ask() -> Callable[..., dict[str, Any]]:
    """``ask(model="g", text="hello there", **keys)``: a chat request; ``text`` may carry a
    ``[[fake: ...]]`` directive."""
    return _ask


@pytest.fixture
def base() -> str:
    """The known-good routes.yaml text (``{fake}`` stands for the fake provider's address)."""
    return BASE


async def _settled(within: float = 0.5) -> list[asyncio.Task[Any]]:
    """Wait (up to ``within`` seconds) for every other task to finish; return those left."""
    deadline = time.perf_counter() + within
    while True:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not others or time.perf_counter() > deadline:
            return others
        await asyncio.sleep(0.005)


@pytest.fixture
def settled() -> Callable[..., Awaitable[list[asyncio.Task[Any]]]]:
    """``await settled()``: the tasks still running after a short grace (cancelled hedges unwind
    in the background once the winner has answered)."""
    return _settled


class LoopLag:
    """``async with LoopLag() as lag``: how late this event loop ran its timers meanwhile, at
    worst (``lag.worst``, seconds). A deadline check allows for it: on a machine whose cores are
    busy with other processes every timer fires late, the deadline's among them, and that is
    the machine's delay, not time the engine spent past the deadline."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, loop.time() - start - self.tick)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def loop_lag() -> type[LoopLag]:
    """``async with loop_lag() as lag``: see ``LoopLag``."""
    return LoopLag


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    srv = FakeServer().run_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


@pytest.fixture
def fake(fake_server: FakeServer) -> Iterator[FakeServer]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def compile_yaml(fake: FakeServer) -> Callable[..., RoutingGraph]:
    def compile_(text: str = BASE, **env: str) -> RoutingGraph:
        return compile_text(text.replace("{fake}", fake.url), env=env)

    return compile_


@pytest.fixture
async def make(compile_yaml: Callable[..., RoutingGraph]) -> AsyncIterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make_(text: str = BASE, *, env: dict[str, str] | None = None, **options: Any) -> Engine:
        options.setdefault("seed", 7)
        eng = Engine.from_graph(compile_yaml(text, **(env or {})), **options)
        engines.append(eng)
        return eng

    yield make_
    for eng in engines:
        await eng.aclose()


# -- raw upstreams --------------------------------------------------------------------------------


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
