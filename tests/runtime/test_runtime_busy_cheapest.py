"""least_busy and cheapest over real loopback HTTP: a new request goes to the idle member while the
others are busy (held by the fake's latency directive, synchronised on ``attempt_start`` events),
the in-flight counts return to zero however a request ends; the cheapest priced model is tried
first and a failure moves on to the next cheapest, the unpriced one last."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed
from engine.fake import FakeServer
from engine.runtime.events import AttemptStarted

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Settled = Callable[[], Awaitable[list[asyncio.Task[Any]]]]

CONFIG = """\
version: 1
defaults: {speed: test, retry: quick, breaker: none, deadline: 20s}
speeds:
  test: {connect: 2s, read: 15s, pool: 2s, retries: 0, backoff: {base: 10ms}}
retry:
  quick: {retry_on: {status: [], errors: []}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka,
      models: {m: {price: {input: 3.0, output: 15.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb,
      models: {m: {price: {input: 0.15, output: 0.6}}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: kc, models: {m: {}}}
groups:
  busy: {strategy: least_busy, targets: [a/m, b/m, c/m]}
  cheap: {strategy: cheapest, targets: [c/m, a/m, b/m]}
routes:
  - {match: {model: busy}, to: busy}
  - {match: {model: cheap}, to: cheap}
"""
HOLD = "[[fake: latency=10s]]"  # far longer than the test: the request is cancelled, not waited


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(CONFIG)


class Started:
    """``await started.first(label)``: resolves once a try on ``label`` has gone on the wire."""

    def __init__(self, eng: Engine) -> None:
        self.events: dict[str, asyncio.Event] = {}
        eng.on("attempt_start", self._seen)

    def _event(self, label: str) -> asyncio.Event:
        return self.events.setdefault(label, asyncio.Event())

    def _seen(self, event: AttemptStarted) -> None:
        self._event(event.target).set()

    async def first(self, label: str) -> None:
        await asyncio.wait_for(self._event(label).wait(), 10)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_least_busy_sends_a_new_request_to_the_idle_member(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    settled: Settled,
) -> None:
    started = Started(eng)
    first = asyncio.create_task(eng.route(ask("busy", HOLD)))
    await started.first("a/m")  # idle group: the written order
    second = asyncio.create_task(eng.route(ask("busy", HOLD)))
    await started.first("b/m")  # a is busy: the next
    resp = await eng.route(ask("busy"))
    assert resp.provider == "c"
    assert [a.target for a in resp.attempts] == ["c/m"]
    assert not first.done() and not second.done()
    assert eng._core.runtime.shared.latencies.busy == {"busy>a/m": 1, "busy>b/m": 1}
    await _cancel(first)
    await _cancel(second)
    assert eng._core.runtime.shared.latencies.busy == {}  # a cancelled request leaves no count behind
    assert [(await eng.route(ask("busy"))).provider for _ in range(3)] == ["a"] * 3
    assert await settled() == []


async def test_least_busy_releases_the_count_of_a_failed_member(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"])
    resp = await eng.route(ask("busy"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "failover"), ("b/m", "ok")]
    assert eng._core.runtime.shared.latencies.busy == {}
    assert (await eng.route(ask("busy"))).provider == "a"


async def test_least_busy_counts_a_stream_until_its_first_event(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    async with eng.stream(ask("busy", "one two three")) as stream:
        iterator = aiter(stream)
        await anext(iterator)  # the group's run ends at the first event, and so does the count
        assert eng._core.runtime.shared.latencies.busy == {}
        rest = [e async for e in iterator]
    assert rest and fake.requests[0]["path"].startswith("/a/")


async def test_cheapest_tries_the_cheapest_first_then_the_next_cheapest(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    resp = await eng.route(ask("cheap"))
    assert resp.provider == "b" and resp.cost is not None and resp.cost > 0
    fake.program("/b/", ["503"])
    resp = await eng.route(ask("cheap"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("b/m", "failover"), ("a/m", "ok")]
    fake.program("/b/", ["503"])
    fake.program("/a/", ["503"])
    resp = await eng.route(ask("cheap"))  # the member without a price last
    assert [a.target for a in resp.attempts] == ["b/m", "a/m", "c/m"] and resp.provider == "c"


async def test_cheapest_exhausted_lists_every_member_in_price_order(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program(None, ["503"] * 3)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("cheap", max_tokens=50))
    assert [a.target for a in info.value.attempts] == ["b/m", "a/m", "c/m"]
    assert [r["path"].split("/")[1] for r in fake.requests] == ["b", "a", "c"]
