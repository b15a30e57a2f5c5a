"""Shared state never crosses a boundary: two deployments on one Redis with the same names but
another endpoint or key get their own answers, listings, single-flight, circuits and rate-limit
windows; a reload to another endpoint never answers from the old one's entries; ``cache.namespace``
keeps even identical configs apart; a Redis URL read from the environment never shows its host or
password in a state warning. And the memory bounds: circuits of client-chosen model names, the
route memo of long names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import AllTargetsFailed
from engine.fake import FakeServer, refused_port
from engine.runtime.breakers import MAX_DYNAMIC
from engine.runtime.events import StateChanged

CONFIG = """\
version: 1
defaults: {speed: t, retry: transient, breaker: none, deadline: 5s}
speeds:
  t: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
cache:
  backend: "{backend}"
  namespace: {namespace}
  responses: {ttl: 10m, max_temperature: 0.1}
providers:
  p: {kind: openai, base_url: "{fake}/{prefix}/v1", api_key: "{key}", limits: {rpm: 2},
      models: {m: {}}}
routes:
  - {match: {}, to: p/m}
"""

ASK = {"model": "m", "messages": [{"role": "user", "content": "same question"}], "temperature": 0}


def _chats(fake: FakeServer) -> int:
    return sum(n for path, n in fake.stats(log=False)["paths"].items() if path.endswith("/chat/completions"))


def _engine(
    fake: FakeServer,
    backend: str,
    *,
    prefix: str = "x",
    key: str = "key-one-123",
    namespace: str = "engine",
    **env: str,
) -> Engine:
    text = (
        CONFIG.replace("{fake}", fake.url)
        .replace("{backend}", backend)
        .replace("{prefix}", prefix)
        .replace("{key}", key)
        .replace("{namespace}", namespace)
    )
    return Engine.from_graph(compile_text(text, env=env))


async def test_deployments_with_another_endpoint_or_key_never_share_answers(
    redis_url: str, upstream: FakeServer
) -> None:
    one = _engine(upstream, redis_url)
    same = _engine(upstream, redis_url)
    url = _engine(upstream, redis_url, prefix="y")
    key = _engine(upstream, redis_url, key="key-two-456")
    try:
        first = await one.route(ASK)
        assert not first.cached and _chats(upstream) == 1
        assert (await same.route(ASK)).cached  # the same endpoint and key: shared, as before
        assert not (await url.route(ASK)).cached
        assert not (await key.route(ASK)).cached
        assert _chats(upstream) == 3
        assert (await key.route(ASK)).cached  # each keeps its own entry
    finally:
        for eng in (one, same, url, key):
            await eng.aclose()


async def test_identical_requests_of_two_deployments_are_not_coalesced(
    redis_url: str, upstream: FakeServer
) -> None:
    slow = {**ASK, "messages": [{"role": "user", "content": "[[fake: latency=200ms]] slow"}]}
    one = _engine(upstream, redis_url)
    other = _engine(upstream, redis_url, key="key-two-456")
    try:
        a, b = await asyncio.gather(one.route(slow), other.route(slow))
        assert [x.attempts[-1].outcome for x in (a, b)] == ["ok", "ok"]
        assert _chats(upstream) == 2
    finally:
        await one.aclose()
        await other.aclose()


async def test_a_reload_to_another_endpoint_never_answers_from_the_old_one(upstream: FakeServer) -> None:
    eng = _engine(upstream, "memory")
    try:
        assert not (await eng.route(ASK)).cached
        assert (await eng.route(ASK)).cached
        text = (
            CONFIG.replace("{fake}", upstream.url)
            .replace("{backend}", "memory")
            .replace("{prefix}", "y")
            .replace("{key}", "key-one-123")
            .replace("{namespace}", "engine")
        )
        eng.reload(graph=compile_text(text, env={}))
        moved = await eng.route(ASK)
        assert not moved.cached
        assert upstream.stats(log=False)["paths"].get("/y/v1/chat/completions") == 1
    finally:
        await eng.aclose()


async def test_listings_are_kept_per_endpoint_and_key(redis_url: str, upstream: FakeServer) -> None:
    one = _engine(upstream, redis_url)
    other = _engine(upstream, redis_url, key="key-two-456")
    try:
        assert not (await one.list_models("p")).cached
        assert (await one.list_models("p")).cached
        assert not (await other.list_models("p")).cached
    finally:
        await one.aclose()
        await other.aclose()


async def test_rate_limit_windows_are_per_endpoint_and_key(redis_url: str, upstream: FakeServer) -> None:
    hot = {**ASK, "temperature": 1}
    one = _engine(upstream, redis_url)
    other = _engine(upstream, redis_url, key="key-two-456")
    try:
        for _ in range(2):  # rpm 2: one's window is full
            assert (await one.route(hot)).attempts[-1].outcome == "ok"
        assert (await other.route(hot)).attempts[-1].outcome == "ok"  # another key's window
    finally:
        await one.aclose()
        await other.aclose()


async def test_a_namespace_keeps_identical_configs_apart(redis_url: str, upstream: FakeServer) -> None:
    one = _engine(upstream, redis_url, namespace="team-a")
    two = _engine(upstream, redis_url, namespace="team-b")
    try:
        await one.route(ASK)
        assert not (await two.route(ASK)).cached
        await one.list_models("p")
    finally:
        await one.aclose()
        await two.aclose()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = {k.decode() for k in client.keys("*")}
    finally:
        client.close()
    assert keys and all(k.startswith(("team-a:", "team-b:")) for k in keys), keys
    assert {k.split(":", 1)[0] for k in keys} == {"team-a", "team-b"}
    assert any(k.startswith("team-a:models") for k in keys)


async def test_a_redis_url_from_the_environment_never_shows_in_a_state_warning(
    refused_url: str, upstream: FakeServer
) -> None:
    host_port = refused_url.split("//", 1)[1].split("/", 1)[0]
    eng = _engine(upstream, "${REDIS_URL}", REDIS_URL=refused_url)
    seen: list[StateChanged] = []
    eng.on("state", seen.append)
    try:
        answer = await eng.route(ASK)  # Redis down: answered anyway, one warning
        assert not answer.cached
    finally:
        await eng.aclose()
    assert seen and seen[0].warning.event == "degraded"
    said = str(seen[0].warning)
    assert "connecting to ***" in said and "127.0.0.1" not in said and "127.0.0.1" not in repr(seen[0])
    assert "cache backend=*** " in eng.graph.describe()
    for text in (eng.graph.describe(), repr(eng.graph.cache)):
        assert host_port not in text, text


async def test_circuits_of_client_chosen_models_are_bounded() -> None:
    text = """\
version: 1
defaults: {speed: t, retry: transient, deadline: 5s}
speeds:
  t: {connect: 200ms, read: 1s, pool: 1s, retries: 0, backoff: {base: 10ms}}
breakers:
  per_model: {failures: 3, recovery: 30s, scope: model}
providers:
  p: {kind: openai, base_url: "http://127.0.0.1:PORT/v1", breaker: per_model}
routes:
  - {match: {}, to: p}
""".replace("PORT", str(refused_port()))
    async with Engine.from_graph(compile_text(text, env={})) as eng:
        for i in range(MAX_DYNAMIC + 100):
            with pytest.raises(AllTargetsFailed):
                await eng.route({"model": f"model-{i}", "messages": []})
        circuits = eng.health()["p"].circuits
        assert len(circuits) == MAX_DYNAMIC + 1  # the rest share p/*
        assert "p/*" in circuits and circuits["p/model-0"] == "closed"


async def test_the_route_memo_never_keeps_long_names(compile_graph: Callable[..., Any]) -> None:
    graph = compile_graph("version: 1\nproviders: {p: {kind: openai}}\nroutes:\n  - {match: {}, to: p}\n")
    for i in range(50):
        assert graph.match(f"{i}" + "m" * 100_000, {}) is not None
    assert graph.match("short", {}) is not None
    memo = graph._by_model._items
    assert list(memo) == ["short"]


async def test_a_circuit_store_outage_keeps_the_circuits_here_without_a_log_line(
    refused_url: str, upstream: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        CONFIG.replace("{fake}", upstream.url)
        .replace("{backend}", refused_url)
        .replace("{prefix}", "x")
        .replace("{key}", "key-one-123")
        .replace("{namespace}", "engine")
        .replace("breaker: none", "breaker: standard")
    )
    caplog.set_level("WARNING", logger="engine.breakers")
    async with Engine.from_graph(compile_text(text, env={})) as eng:
        for _ in range(3):
            assert (await eng.route({**ASK, "temperature": 1})).attempts[-1].outcome == "ok"
    # the state layer's own warning tells of the outage; the circuits go on in this process
    assert [r for r in caplog.records if r.name == "engine.breakers"] == []
