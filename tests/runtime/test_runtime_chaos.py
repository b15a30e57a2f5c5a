"""Chaos: 2,000 requests (routed and streamed, through every strategy) over three upstreams that
inject seeded random faults. Every request ends with exactly one answer (its own) or a typed
``RouteError`` listing its attempts; none outlives its deadline."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import RouteError
from engine.fake import FakeServer
from engine.result import Done, TextDelta

Make = Callable[..., Engine]
Settled = Callable[[], Awaitable[list[asyncio.Task[Any]]]]

DEADLINE = 0.4
SLACK = 0.15  # unwinding, beyond the loop's own lag (see LoopLag)
REQUESTS = 2000
CONCURRENCY = 64

CONFIG = """\
version: 1
defaults: {speed: chaos, retry: transient, breaker: chaos, deadline: 400ms}
speeds:
  chaos: {connect: 100ms, read: 120ms, pool: 100ms, retries: 1,
          backoff: {base: 10ms, factor: 2, max: 40ms, jitter: 10ms}}
breakers:
  chaos: {failures: 4, recovery: 150ms}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: kc, models: {m: {}}}
groups:
  priority: {strategy: priority, targets: [a/m, b/m, c/m]}
  round_robin: {strategy: round_robin, targets: [a/m, b/m, c/m]}
  weighted: {strategy: weighted, targets: [{target: a/m, weight: 1}, {target: b/m, weight: 2},
                                           {target: c/m, weight: 3}]}
  least_latency: {strategy: least_latency, targets: [a/m, b/m, c/m]}
  hedged: {strategy: hedged, targets: [a/m, b/m, c/m], hedge_after: 30ms}
routes:
  - {match: {model: priority}, to: priority}
  - {match: {model: round_robin}, to: round_robin}
  - {match: {model: weighted}, to: weighted}
  - {match: {model: least_latency}, to: least_latency}
  - {match: {model: hedged}, to: hedged}
"""

FAULTS = [
    "503",
    "500",
    "429 retry_after_ms=20",
    "reset",
    "truncate",
    "malformed",
    "latency=200ms",
    "latency=30ms",
    "401",
    "die_after=2",
    "stream_error",
    "400",
]
GROUPS = ["priority", "round_robin", "weighted", "least_latency", "hedged"]


@pytest.mark.slow
async def test_chaos(settled: Settled, make: Make, fake: FakeServer, loop_lag: Any) -> None:
    for i, prefix in enumerate(("/a/", "/b/", "/c/")):
        fake.program(prefix, FAULTS, rate=0.35, seed=100 + i)
    eng = make(CONFIG, seed=11)
    limit = asyncio.Semaphore(CONCURRENCY)
    outcomes: Counter[str] = Counter()
    worst = 0.0
    took_all = [0.0] * REQUESTS

    async def one(i: int) -> None:
        nonlocal worst
        words = f"request {i} says hi"
        request = {"model": GROUPS[i % len(GROUPS)], "messages": [{"role": "user", "content": words}]}
        async with limit:
            start = time.perf_counter()
            try:
                if i % 4 == 3:
                    events = [e async for e in eng.stream(request)]
                    done = events[-1]
                    assert isinstance(done, Done)
                    got = "".join(e.text for e in events if isinstance(e, TextDelta))
                    attempts = done.attempts
                    provider = done.provider
                    outcomes["streamed"] += 1
                else:
                    resp = await eng.route(request)
                    got, attempts, provider = resp.text, resp.attempts, resp.provider
                    outcomes["answered"] += 1
            except RouteError as exc:
                assert exc.attempts, f"request {i}: {type(exc).__name__} without attempts"
                assert not any(a.outcome == "ok" for a in exc.attempts), exc
                outcomes[type(exc).__name__] += 1
            else:
                assert got == f"echo: {words}", f"request {i} got someone else's answer: {got}"
                oks = [a for a in attempts if a.outcome == "ok"]
                assert len(oks) == 1, f"request {i} answered {len(oks)} times"
                assert oks[0].target.split("/")[0] == provider
            took = took_all[i] = time.perf_counter() - start
            worst = max(worst, took)

    started = time.perf_counter()
    async with loop_lag() as lag:
        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    elapsed = time.perf_counter() - started
    over = [(i, took) for i, took in enumerate(took_all) if took >= DEADLINE + SLACK + lag.worst]
    assert over == [], f"past the deadline (loop lag at worst {lag.worst * 1000:.0f}ms): {over[:5]}"
    total = sum(outcomes.values())
    assert total == REQUESTS
    assert outcomes["answered"] + outcomes["streamed"] > REQUESTS * 0.3, outcomes  # not vacuous
    assert await settled() == []
    print(f"\nchaos: {dict(outcomes)} in {elapsed:.1f}s, worst {worst * 1000:.0f}ms")
