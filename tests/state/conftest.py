"""Fixtures for the state-layer tests: the session's redis-server (``redis_server``, from
tests/conftest.py) emptied per test, a ``backend`` parameter (memory | redis), small compiled
graphs, and for the engine-level tests the fake provider on a loopback thread (``upstream``,
reset per test) and ``engine_for`` (an Engine on a config text, closed after the test).

A missing redis-server fails the tests with a clear message; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.api import Engine
from engine.compiler import compile_text
from engine.fake import FakeServer, refused_port
from engine.graph import CacheConfig, Provider, RoutingGraph

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_server)
    try:
        client.flushdb()
    finally:
        client.close()
    yield redis_server


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """``memory`` or the URL of a clean Redis."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def refused_url() -> str:
    """A Redis URL on a loopback port where nothing listens."""
    return f"redis://127.0.0.1:{refused_port()}/0"


GRAPH = """\
version: 1
providers:
  limited:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    limits: {rpm: 5, tpm: 1000}
    models: {m: {}}
  rpm_only:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    limits: {rpm: 3}
  free:
    kind: openai
    base_url: http://127.0.0.1:9/v1
routes:
  - match: {}
    to: free
"""




@pytest.fixture(scope="session")
def providers() -> Mapping[str, Provider]:
    """``limited`` (rpm 5, tpm 1000), ``rpm_only`` (rpm 3) and ``free`` (no limits)."""
    return compile_text(GRAPH, base_dir=ROOT, env={}).providers


@pytest.fixture
def compile_graph() -> Callable[..., RoutingGraph]:
    """``compile_graph(text, **env)``: a routing graph from YAML text."""
    return lambda text, **env: compile_text(text, base_dir=ROOT, env=env)


@pytest.fixture
def cache_config() -> Callable[..., CacheConfig]:
    """``cache_config(backend, responses_ttl=600, models_ttl=3600, max_temperature=0.1)``."""

    def make(backend: str, *, responses_ttl: float | None = 600.0, models_ttl: float = 3600.0,
             max_temperature: float = 0.1) -> CacheConfig:
        return CacheConfig(backend=backend, models_ttl=models_ttl, responses_ttl=responses_ttl,
                           max_temperature=max_temperature)

    return make


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeServer]:
    srv = FakeServer().run_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


@pytest.fixture
def upstream(upstream_server: FakeServer) -> Iterator[FakeServer]:
    """The fake provider (one per session, on its own thread), reset for this test."""
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture
async def engine_for(upstream: FakeServer) -> AsyncIterator[Callable[..., Engine]]:
    """``engine_for(text, backend="memory", **options)``: an Engine on ``text`` with ``{fake}``
    replaced by the fake provider's address and ``{backend}`` by ``backend``; closed after the
    test."""
    engines: list[Engine] = []

    def make(text: str, backend: str = "memory", **options: Any) -> Engine:
        graph = compile_text(text.replace("{fake}", upstream.url).replace("{backend}", backend),
                             base_dir=ROOT, env={})
        options.setdefault("seed", 7)
        eng = Engine.from_graph(graph, **options)
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        await eng.aclose()
