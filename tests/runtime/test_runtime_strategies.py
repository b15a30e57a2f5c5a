"""Failover strategies over real loopback HTTP: priority, round robin, weighted (seeded), least
latency (with exploration and recovery), hedged (the loser is cancelled and its connection
released), ``max_attempts``, nested groups."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError
from engine.fake import FakeServer

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Settled = Callable[[], Awaitable[list[asyncio.Task[Any]]]]

CONFIG = """\
version: 1
defaults: {speed: test, retry: quick, breaker: none, deadline: 3s}
speeds:
  test: {connect: 1s, read: 1s, pool: 1s, retries: 0, backoff: {base: 10ms}}
retry:
  quick: {retry_on: {status: [], errors: []}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: kc, models: {m: {}}}
groups:
  prio: {strategy: priority, targets: [a/m, b/m, c/m]}
  rr: {strategy: round_robin, targets: [a/m, b/m, c/m]}
  w: {strategy: weighted, targets: [{target: a/m, weight: 1}, {target: b/m, weight: 3}]}
  fast: {strategy: least_latency, targets: [a/m, b/m]}
  race: {strategy: hedged, targets: [a/m, b/m, c/m], hedge_after: 60ms}
  two: {strategy: priority, targets: [a/m, b/m, c/m], max_attempts: 2}
  inner: {strategy: priority, targets: [a/m, b/m]}
  outer: {strategy: priority, targets: [inner, a/m, c/m]}
routes:
  - {match: {model: "*"}, to: "*"}
"""


def config() -> str:
    routes = "\n".join(
        f"  - {{match: {{model: {g}}}, to: {g}}}" for g in ("prio", "rr", "w", "fast", "race", "two", "outer")
    )
    return CONFIG.replace('  - {match: {model: "*"}, to: "*"}', routes)


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(config())


def providers(resps: list[Any]) -> list[str]:
    return [r.provider for r in resps]


async def test_priority_always_starts_with_the_first(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    assert providers([await eng.route(ask("prio")) for _ in range(4)]) == ["a"] * 4
    fake.program("/a/", ["503"])
    resp = await eng.route(ask("prio"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "failover"), ("b/m", "ok")]


async def test_round_robin_rotates_the_first_target(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    resps = [await eng.route(ask("rr")) for _ in range(6)]
    assert providers(resps) == ["a", "b", "c"] * 2, [r.attempts for r in resps]


async def test_weighted_follows_the_weights_and_the_seed(make: Make, fake: FakeServer, ask: Ask) -> None:
    one, two = make(config(), seed=42), make(config(), seed=42)
    first = providers([await one.route(ask("w")) for _ in range(200)])
    second = providers([await two.route(ask("w")) for _ in range(200)])
    assert first == second  # seeded: the same draws
    share = Counter(first)["b"] / len(first)
    assert 0.65 < share < 0.85  # weight 3 of 4


async def test_weighted_fails_over_to_the_rest(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program(None, ["503"] * 2)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("w"))
    assert sorted(a.target for a in info.value.attempts) == ["a/m", "b/m"]


async def test_least_latency_prefers_the_fastest_and_explores_to_notice_recovery(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["latency=40ms"], rate=1.0, seed=1)
    phase1 = providers([await eng.route(ask("fast")) for _ in range(40)])
    assert Counter(phase1)["b"] >= 30
    assert "a" in phase1[5:]  # explored now and then although slower
    fake.reset()
    fake.program("/b/", ["latency=40ms"], rate=1.0, seed=1)
    phase2 = providers([await eng.route(ask("fast")) for _ in range(40)])
    assert Counter(phase2[-15:])["a"] >= 12  # a recovered and took over


async def test_least_latency_moves_away_from_a_failing_member(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/b/", ["503"], rate=1.0, seed=1)
    resps = [await eng.route(ask("fast")) for _ in range(20)]
    assert all(r.provider == "a" for r in resps)
    assert sum(r.attempts[0].target == "b/m" for r in resps[5:]) <= 4


async def test_hedged_starts_the_next_after_hedge_after_and_cancels_the_loser(
    settled: Settled,
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    await eng.route(ask("race"))  # open the connections first
    fake.program("/a/", ["latency=500ms"])
    start = time.perf_counter()
    resp = await eng.route(ask("race"))
    elapsed = time.perf_counter() - start
    assert resp.provider == "b"
    assert elapsed >= 0.06  # b started at hedge_after; a (500 ms late) cancelled, not awaited
    assert sorted((a.target, a.outcome) for a in resp.attempts) == [("a/m", "cancelled"), ("b/m", "ok")]
    assert await settled() == []
    conn = next(c for c in eng._core.runtime.connections if c.name == "a")
    assert conn._backend.in_use() == 0  # type: ignore[union-attr]


async def test_hedged_starts_the_next_at_once_when_one_fails(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"])
    start = time.perf_counter()
    resp = await eng.route(ask("race"))
    assert resp.provider == "b"
    assert time.perf_counter() - start < 0.05
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "failover"), ("b/m", "ok")]


async def test_hedged_keeps_the_first_answer_when_the_first_is_only_a_bit_late(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["latency=100ms"])
    fake.program("/b/", ["latency=400ms"])
    resp = await eng.route(ask("race"))
    assert resp.provider == "a"
    outcomes = {a.target: a.outcome for a in resp.attempts}
    assert outcomes["a/m"] == "ok" and outcomes["b/m"] == "cancelled"


async def test_hedged_stops_on_a_fatal_error(
    settled: Settled, eng: Engine, fake: FakeServer, ask: Ask
) -> None:
    fake.program("/a/", ["latency=300ms"])
    fake.program("/b/", ["400"])
    with pytest.raises(ProviderError):
        await eng.route(ask("race"))
    assert await settled() == []


async def test_max_attempts_bounds_distinct_targets(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program(None, ["503"] * 3)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("two"))
    assert [a.target for a in info.value.attempts] == ["a/m", "b/m"]
    assert not any(r["path"].startswith("/c/") for r in fake.requests)


async def test_nested_groups_fail_over_and_never_try_a_target_twice(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"])
    fake.program("/b/", ["503"])
    resp = await eng.route(ask("outer"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [
        ("a/m", "failover"),
        ("b/m", "failover"),
        ("c/m", "ok"),
    ]
