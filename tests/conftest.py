"""Fixtures for the whole suite, in one place:

- a clean environment: the variables the engine, the configs and the SDKs read are removed for the
  session, so a developer's shell (an exported OPENAI_API_KEY, REDIS_URL, ENGINE_PROFILE, a proxy)
  does not change a result; a test that wants one sets it with ``monkeypatch``;
- the fake provider on a loopback thread, one per session, reset for every test (``fake``; also
  under the names the suites grew up with: ``fake_server``, ``upstream``, ``upstream_server``,
  ``sdk_server``);
- the engine factory: ``make(text=BASE, env=None, **options)`` and its state-suite spelling
  ``engine_for(text, backend="memory", **options)``, engines closed after the test;
  ``compile_yaml``, ``ask``, ``base``, ``settled``, ``loop_lag``;
- a real redis-server on a free loopback port, started once per session (``redis_server``: its URL;
  ``redis_url``: the same, emptied for the test). A missing redis-server fails the tests that need
  it with a clear message; nothing is skipped.

Every port is a free one the OS chose; no test binds a fixed port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.api import Engine
from engine.compiler import compile_text
from engine.fake import FakeServer
from engine.graph import RoutingGraph

ROOT = Path(__file__).resolve().parent.parent

# -- a clean environment ------------------------------------------------------------------------

# The engine reads ENGINE_* (ENGINE_PROFILE, ENGINE_FAKE_URL); the shipped configs, examples and
# templates interpolate *_API_KEY, REDIS_URL, OLLAMA_URL, OPENAI_ORG; the official SDKs read their
# own *_BASE_URL and GOOGLE_* settings; httpx and aiohttp honour the proxy variables.
_READ = re.compile(
    r"ENGINE_\w*|\w+_API_KEY|\w+_BASE_URL|REDIS_URL|OLLAMA_(URL|HOST)|OPENAI_(ORG|ORG_ID|PROJECT)"
    r"|GOOGLE_\w+|GEMINI_\w+|ANTHROPIC_\w+|OPENAI_\w+|(HTTPS?|ALL|NO|WS|WSS)_PROXY|SSL_CERT_\w+",
    re.IGNORECASE,
)


def engine_env_names(environ: Iterable[str]) -> list[str]:
    """The names in ``environ`` the engine, its configs or the SDKs would read."""
    return [name for name in environ if _READ.fullmatch(name)]


@pytest.fixture(scope="session")
def env_names_read() -> Callable[[Iterable[str]], list[str]]:
    """``env_names_read(names)``: those the clean environment removes."""
    return engine_env_names


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> Iterator[None]:
    """The session runs without any variable ``engine_env_names`` matches (restored after)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in engine_env_names(os.environ):
            mp.delenv(name)
        yield


# -- the fake provider --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    """The session's fake provider, serving on its own thread."""
    srv = FakeServer().run_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


@pytest.fixture
def fake(fake_server: FakeServer) -> Iterator[FakeServer]:
    """The fake provider, reset for this test (programs, counters, log and a required key)."""
    fake_server.reset()
    yield fake_server
    fake_server.require_key = None
    fake_server.reset()


@pytest.fixture(scope="session")
def upstream_server(fake_server: FakeServer) -> FakeServer:
    """``fake_server`` under the state suite's name."""
    return fake_server


@pytest.fixture(scope="session")
def sdk_server(fake_server: FakeServer) -> FakeServer:
    """``fake_server`` under the SDK suite's name."""
    return fake_server


@pytest.fixture
def upstream(fake: FakeServer) -> FakeServer:
    """``fake`` under the state suite's name."""
    return fake


# -- the engine factory -------------------------------------------------------------------------

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


def _compile(fake: FakeServer, text: str, env: dict[str, str], backend: str = "memory") -> RoutingGraph:
    text = text.replace("{fake}", fake.url).replace("{backend}", backend)
    return compile_text(text, base_dir=ROOT, env=env)


@pytest.fixture
def compile_yaml(fake: FakeServer) -> Callable[..., RoutingGraph]:
    """``compile_yaml(text=BASE, **env)``: a graph, ``{fake}`` replaced by the fake's address."""
    return lambda text=BASE, **env: _compile(fake, text, env)


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    """The engines a test built through ``make`` or ``engine_for``: closed after it."""
    built: list[Engine] = []
    yield built
    for eng in built:
        await eng.aclose()


@pytest.fixture
def make(fake: FakeServer, engines: list[Engine]) -> Callable[..., Engine]:
    """``make(text=BASE, *, env=None, **options)``: an Engine on ``text`` (``{fake}`` replaced),
    seeded (``seed=7``) unless told, closed after the test."""

    def make_(text: str = BASE, *, env: dict[str, str] | None = None, **options: Any) -> Engine:
        options.setdefault("seed", 7)
        eng = Engine.from_graph(_compile(fake, text, env or {}), **options)
        engines.append(eng)
        return eng

    return make_


@pytest.fixture
def engine_for(fake: FakeServer, engines: list[Engine]) -> Callable[..., Engine]:
    """``engine_for(text, backend="memory", **options)``: ``make`` with ``{backend}`` in ``text``
    replaced by ``backend`` (memory or a Redis URL)."""

    def make_(text: str, backend: str = "memory", **options: Any) -> Engine:
        options.setdefault("seed", 7)
        eng = Engine.from_graph(_compile(fake, text, {}, backend), **options)
        engines.append(eng)
        return eng

    return make_


# -- the event loop -----------------------------------------------------------------------------


async def _settled(within: float = 0.5) -> list[asyncio.Task[Any]]:
    """Wait (up to ``within`` seconds) for every other task to finish; return those left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not others or loop.time() > deadline:
            return others
        await asyncio.wait(others, timeout=deadline - loop.time())


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


# -- redis ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start(exe: str) -> tuple[subprocess.Popen[bytes], int]:
    last = ""
    for _ in range(3):  # the free port may be taken between probe and bind: try another
        port = _free_port()
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if proc.poll() is not None:
                break
            if _pings(port):
                return proc, port
            time.sleep(0.02)  # polling a subprocess: there is nothing to wait on
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=5)[0]
        last = out.decode(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not start on loopback:\n{last}", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a redis-server started for this session."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed, and the state tests need a real one. "
            "Install it with `bash .ci/setup dev` (or `apt-get install redis-server`).",
            pytrace=False,
        )
    proc, port = _start(exe)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_server)
    try:
        client.flushdb()
    finally:
        client.close()
    yield redis_server
