"""Fixtures of the state-layer tests alone: a ``backend`` parameter (memory | a clean Redis), a
Redis URL nobody listens on, small compiled graphs and cache configs. Redis (``redis_url``), the
fake provider (``upstream``) and ``engine_for`` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from engine.compiler import compile_text
from engine.fake import refused_port
from engine.graph import CacheConfig, Provider, RoutingGraph

ROOT = Path(__file__).resolve().parent.parent.parent


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

    def make(
        backend: str,
        *,
        responses_ttl: float | None = 600.0,
        models_ttl: float = 3600.0,
        max_temperature: float = 0.1,
    ) -> CacheConfig:
        return CacheConfig(
            backend=backend,
            models_ttl=models_ttl,
            responses_ttl=responses_ttl,
            max_temperature=max_temperature,
        )

    return make
