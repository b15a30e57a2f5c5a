"""The route's deadline bounds everything (tries, retries, backoff, hedges, failover): nothing runs
past it, and ``DeadlineExceeded`` lists the attempts, the one cut short included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, DeadlineExceeded, RouteError
from engine.fake import FakeServer

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Settled = Callable[[], Awaitable[list[asyncio.Task[Any]]]]

SLACK = 0.1  # seconds past the deadline a request may take to unwind on a busy machine

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 300ms}
speeds:
  test: {connect: 1s, read: 2s, pool: 1s, retries: 3, backoff: {base: 100ms, factor: 2, max: 1s}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  race: {strategy: hedged, targets: [a/m, b/m], hedge_after: 50ms}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: race}, to: race}
"""


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(CONFIG)


async def test_a_slow_upstream_is_cut_at_the_deadline(
    eng: Engine, fake: FakeServer, ask: Ask, loop_lag: Any
) -> None:
    fake.program("/a/", ["latency=1s"])
    async with loop_lag() as lag:
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded) as info:
            await eng.route(ask())
        elapsed = time.perf_counter() - start
    assert 0.3 <= elapsed < 0.3 + SLACK + lag.worst
    (attempt,) = info.value.attempts
    assert attempt.target == "a/m" and attempt.outcome == "deadline"
    assert 0.3 - SLACK <= attempt.latency < 0.3 + SLACK + lag.worst
    assert "300ms" in str(info.value)


async def test_backoff_never_sleeps_past_the_deadline(
    eng: Engine, fake: FakeServer, ask: Ask, loop_lag: Any
) -> None:
    fake.program(None, ["503"] * 10)
    async with loop_lag() as lag:
        start = time.perf_counter()
        with pytest.raises(AllTargetsFailed) as info:
            await eng.route(ask())
        took = time.perf_counter() - start
    assert took < 0.3 + lag.worst
    # a: a retry after 100ms; at ~100ms a 200ms sleep would cross 300ms: fail over to b at once;
    # b: a retry after 100ms; at ~200ms the next sleep would cross it too: give up before it.
    assert [(a.target, a.outcome) for a in info.value.attempts] == [
        ("a/m", "retry"),
        ("a/m", "failover"),
        ("b/m", "retry"),
        ("b/m", "failover"),
    ]


async def test_hedges_are_cut_at_the_deadline_too(
    settled: Settled, eng: Engine, fake: FakeServer, ask: Ask, loop_lag: Any
) -> None:
    fake.program(None, ["latency=1s"] * 2)
    async with loop_lag() as lag:
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded) as info:
            await eng.route(ask("race"))
        took = time.perf_counter() - start
    assert took < 0.3 + SLACK + lag.worst
    assert sorted((a.target, a.outcome) for a in info.value.attempts) == [
        ("a/m", "deadline"),
        ("b/m", "deadline"),
    ]
    assert await settled() == []


async def test_no_request_outlives_its_deadline_under_load(
    eng: Engine, fake: FakeServer, ask: Ask, loop_lag: Any
) -> None:
    fake.program(None, ["latency=250ms", "503", "latency=1s", "ok", "reset"], rate=0.7, seed=3)

    async def one(i: int) -> float:
        start = time.perf_counter()
        try:
            await eng.route(ask(("g", "race")[i % 2]))
        except RouteError as exc:
            assert exc.attempts
        return time.perf_counter() - start

    async with loop_lag() as lag:
        took = await asyncio.gather(*(one(i) for i in range(100)))
    assert max(took) < 0.3 + SLACK + lag.worst


async def test_a_caller_cancelling_is_recorded_as_cancelled_not_deadline(
    eng: Engine, fake: FakeServer, ask: Ask
) -> None:
    fake.program("/a/", ["latency=1s"])
    ended: list[Any] = []
    started = asyncio.Event()
    eng.on("attempt_end", ended.append)
    eng.on("attempt_start", lambda _: started.set())
    task = asyncio.create_task(eng.route(ask()))
    await started.wait()  # the try is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.attempt.outcome for e in ended] == ["cancelled"]
