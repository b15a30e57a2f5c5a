"""``State``: the backend chosen from ``cache.backend``, the cache policy of a request (the same
decision as ``plan.cache_decision``), reconfiguration on reload, ping and stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.plan import cache_decision
from engine.runtime.state import State
from engine.runtime.state.memory import MemoryLimiter
from engine.runtime.state.redis import RedisLimiter


def test_memory_backend(cache_config: Callable[..., Any]) -> None:
    s = State.create(cache_config("memory"))
    assert s.backend == "memory" and not s.remote
    assert isinstance(s.limiter, MemoryLimiter)


def test_redis_backend_connects_lazily(cache_config: Callable[..., Any]) -> None:
    s = State.create(cache_config("redis://127.0.0.1:1/0"))  # nothing listens: no error yet
    assert s.backend == "redis" and s.remote
    assert isinstance(s.limiter, RedisLimiter)


def test_an_unknown_backend_is_an_error(cache_config: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="memory"):
        State.create(cache_config("memcached://x"))


@pytest.mark.parametrize(
    "request_, policy",
    [
        ({"model": "m", "temperature": 0}, "use"),
        ({"model": "m", "temperature": 0.1}, "use"),
        ({"model": "m", "temperature": 0.5}, "off"),
        ({"model": "m"}, "off"),
        ({"model": "m", "temperature": 0, "stream": True}, "off"),
        ({"model": "m", "temperature": 0, "metadata": {"cache": False}}, "off"),
        ({"model": "m", "temperature": 0, "metadata": {"cache": "refresh"}}, "refresh"),
    ],
)
def test_cache_policy(request_: dict[str, Any], policy: str, cache_config: Callable[..., Any]) -> None:
    assert State.create(cache_config("memory")).cache_policy(request_) == policy


def test_cache_policy_agrees_with_the_plan(cache_config: Callable[..., Any]) -> None:
    """The run-time decision is written out for speed; it must stay the plan's."""
    for ttl in (600.0, None):
        for max_temperature in (0.0, 0.1, 1.0):
            config = cache_config("memory", responses_ttl=ttl, max_temperature=max_temperature)
            state = State.create(config)
            for temperature in (None, 0, 0.0, 0.1, 0.5, 1, 2.0):
                for stream in (None, False, True):
                    for meta in (
                        None,
                        {},
                        {"cache": False},
                        {"cache": True},
                        {"cache": "refresh"},
                        {"cache": "other"},
                        {"tier": "x"},
                    ):
                        request: dict[str, Any] = {"model": "m"}
                        for key, value in (
                            ("temperature", temperature),
                            ("stream", stream),
                            ("metadata", meta),
                        ):
                            if value is not None:
                                request[key] = value
                        policy = state.cache_policy(request)
                        cacheable, why = cache_decision(config, request)
                        assert (policy != "off") == cacheable, (request, why)
                        assert (policy == "refresh") == (cacheable and "refresh" in why), request


def test_cache_policy_is_off_without_cache_responses(cache_config: Callable[..., Any]) -> None:
    s = State.create(cache_config("memory", responses_ttl=None))
    assert s.cache_policy({"model": "m", "temperature": 0}) == "off"


def test_configure_keeps_the_backend_and_adopts_ttls(cache_config: Callable[..., Any]) -> None:
    s = State.create(cache_config("memory"))
    assert s.configure(cache_config("memory", responses_ttl=5.0, models_ttl=7.0))
    assert (s.responses.ttl, s.registry.ttl) == (5.0, 7.0)
    assert not s.configure(cache_config("redis://127.0.0.1:1/0"))


async def test_ping(backend: str, refused_url: str, cache_config: Callable[..., Any]) -> None:
    up, down = State.create(cache_config(backend)), State.create(cache_config(refused_url))
    try:
        assert await up.ping()
        assert not await down.ping()
    finally:
        await up.aclose()
        await down.aclose()


def test_stats_shape(cache_config: Callable[..., Any]) -> None:
    stats = State.create(cache_config("redis://127.0.0.1:1/0")).stats()
    assert stats["backend"] == "redis" and stats["degraded"] is False
    assert set(stats["flights"]) == {
        "started",
        "joined",
        "in_flight",
        "led",
        "followed",
        "took_over",
        "fell_back",
    }
    assert set(stats["models"]) == {"hits", "misses", "size", "errors"}
