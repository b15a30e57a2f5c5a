"""Fixtures for the state-layer tests: a real redis-server on a free loopback port (session scope),
a ``backend`` parameter (memory | redis) with a clean database per test, and small compiled graphs.

A missing redis-server fails the tests with a clear message; nothing is skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from engine.compiler import compile_text
from engine.graph import CacheConfig, Provider, RoutingGraph

ROOT = Path(__file__).resolve().parent.parent.parent


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
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if proc.poll() is not None:
                break
            if _pings(port):
                return proc, port
            time.sleep(0.02)
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
        pytest.fail("redis-server is not installed, and the state tests need a real one. "
                    "Install it with `bash .ci/setup dev` (or `apt-get install redis-server`).",
                    pytrace=False)
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


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """``memory`` or the URL of a clean Redis."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def refused_url() -> str:
    """A Redis URL on a loopback port where nothing listens."""
    return f"redis://127.0.0.1:{_free_port()}/0"


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
