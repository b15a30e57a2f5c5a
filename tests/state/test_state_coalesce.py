"""Single-flight: in process (shared task, errors to all, cancellation) and across instances (a short
Redis lock), alone and through ``State.respond`` with the response cache."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest

from engine.result import Response
from engine.runtime.state import SingleFlight, State


class Upstream:
    """A fake upstream call: counts calls, waits ``delay``, answers or raises ``error``."""

    def __init__(self, delay: float = 0.05, error: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.error = error
        self.cancelled = 0

    async def __call__(self) -> Response:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return Response(text=f"answer {self.calls}", provider="p", model="m")


async def test_concurrent_identical_calls_go_upstream_once() -> None:
    flights, up = SingleFlight(), Upstream()
    results = await asyncio.gather(*(flights.do("k", up) for _ in range(20)))
    assert up.calls == 1
    assert {r.text for r in results} == {"answer 1"}
    assert (flights.started, flights.joined, len(flights)) == (1, 19, 0)
    await flights.do("k", up)  # finished flights are forgotten
    assert up.calls == 2


async def test_different_keys_do_not_share() -> None:
    flights, up = SingleFlight(), Upstream()
    await asyncio.gather(flights.do("a", up), flights.do("b", up))
    assert up.calls == 2


async def test_a_failure_reaches_every_caller() -> None:
    flights, up = SingleFlight(), Upstream(error=ValueError("upstream broke"))
    results = await asyncio.gather(*(flights.do("k", up) for _ in range(5)), return_exceptions=True)
    assert up.calls == 1
    assert all(isinstance(r, ValueError) and str(r) == "upstream broke" for r in results)


async def test_cancelling_the_leader_does_not_strand_followers() -> None:
    flights, up = SingleFlight(), Upstream(delay=0.1)
    leader = asyncio.ensure_future(flights.do("k", up))
    await asyncio.sleep(0)
    followers = [asyncio.ensure_future(flights.do("k", up)) for _ in range(3)]
    await asyncio.sleep(0.02)
    leader.cancel()
    results = await asyncio.gather(*followers)
    assert leader.cancelled()
    # the leader's call was cancelled with it; one follower took over, the others shared that
    assert [r.text for r in results] == ["answer 2"] * 3
    assert up.calls == 2 and up.cancelled == 1 and len(flights) == 0


async def test_the_leader_runs_in_its_own_task_under_its_own_deadline() -> None:
    flights, up = SingleFlight(), Upstream(delay=5)

    async def with_deadline() -> Response:
        async with asyncio.timeout(0.02):
            return await flights.do("k", up)

    with pytest.raises(TimeoutError):
        await with_deadline()
    assert up.cancelled == 1 and len(flights) == 0
    up.delay = 0.01
    assert (await flights.do("k", up)).text == "answer 2"


async def test_a_follower_deadline_leaves_the_leader_and_the_others() -> None:
    flights, up = SingleFlight(), Upstream(delay=0.1)

    async def impatient() -> Response:
        async with asyncio.timeout(0.02):
            return await flights.do("k", up)

    leader = asyncio.ensure_future(flights.do("k", up))
    await asyncio.sleep(0)
    short = asyncio.ensure_future(impatient())
    other = asyncio.ensure_future(flights.do("k", up))
    with pytest.raises(TimeoutError):
        await short
    assert (await leader).text == (await other).text == "answer 1"
    assert up.calls == 1 and up.cancelled == 0


async def test_a_lone_failure_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    flights = SingleFlight()
    follower_gone = Upstream(delay=0.05, error=ValueError("x"))
    leader = asyncio.ensure_future(flights.do("k", follower_gone))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(flights.do("k", follower_gone))
    await asyncio.sleep(0.01)
    follower.cancel()
    with pytest.raises(ValueError):
        await leader
    await asyncio.gather(follower, return_exceptions=True)
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


async def test_respond_coalesces_then_serves_from_cache(
    backend: str, cache_config: Callable[..., Any]
) -> None:
    state, up = State.create(cache_config(backend)), Upstream()
    try:
        results = await asyncio.gather(*(state.respond("p/m", b"{}", up) for _ in range(10)))
        assert up.calls == 1 and {r.text for r in results} == {"answer 1"}
        assert not any(r.cached for r in results)
        hit = await state.respond("p/m", b"{}", up)
        assert hit.cached and hit.text == "answer 1" and up.calls == 1
        fresh = await state.respond("p/m", b"{}", up, refresh=True)
        assert not fresh.cached and fresh.text == "answer 2"
        assert (await state.respond("p/m", b"{}", up)).text == "answer 2"  # refresh replaced it
    finally:
        await state.aclose()


async def test_respond_stores_nothing_on_failure(backend: str, cache_config: Callable[..., Any]) -> None:
    state, up = State.create(cache_config(backend)), Upstream(error=RuntimeError("no"))
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await state.respond("p/m", b"{}", up)
        assert up.calls == 2
    finally:
        await state.aclose()


async def test_across_instances_one_upstream_call(redis_url: str, cache_config: Callable[..., Any]) -> None:
    a, b = State.create(cache_config(redis_url)), State.create(cache_config(redis_url))
    up_a, up_b = Upstream(delay=0.15), Upstream(delay=0.15)
    try:
        first = asyncio.ensure_future(a.respond("p/m", b"{}", up_a))
        await asyncio.sleep(0.03)  # a holds the lock
        others = await asyncio.gather(*(b.respond("p/m", b"{}", up_b) for _ in range(5)))
        assert (await first).text == "answer 1"
        assert up_a.calls + up_b.calls == 1
        assert all(r.cached and r.text == "answer 1" for r in others)
        assert b.stats()["flights"]["followed"] == 1  # b's five callers: one wait
    finally:
        await a.aclose()
        await b.aclose()


async def test_across_instances_leader_failure_means_independent_call(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a, b = State.create(cache_config(redis_url)), State.create(cache_config(redis_url))
    up_a, up_b = Upstream(delay=0.1, error=RuntimeError("a failed")), Upstream(delay=0.01)
    try:
        first = asyncio.ensure_future(a.respond("p/m", b"{}", up_a))
        await asyncio.sleep(0.03)
        answer = await b.respond("p/m", b"{}", up_b)
        with pytest.raises(RuntimeError):
            await first
        assert answer.text == "answer 1" and not answer.cached
        assert (up_a.calls, up_b.calls) == (1, 1)
    finally:
        await a.aclose()
        await b.aclose()


async def test_across_instances_lock_timeout_falls_back(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a = State.create(cache_config(redis_url), lock_ttl=0.15)
    b = State.create(cache_config(redis_url), lock_ttl=0.15)
    up_a, up_b = Upstream(delay=1.0), Upstream(delay=0.01)
    try:
        slow = asyncio.ensure_future(a.respond("p/m", b"{}", up_a))
        await asyncio.sleep(0.03)
        loop = asyncio.get_running_loop()
        start = loop.time()
        answer = await b.respond("p/m", b"{}", up_b)
        assert loop.time() - start < 0.6
        assert answer.text == "answer 1" and up_b.calls == 1
        assert b.stats()["flights"]["fell_back"] == 1
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    finally:
        await a.aclose()
        await b.aclose()


async def test_follower_wait_is_bounded_by_its_deadline(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a, b = State.create(cache_config(redis_url)), State.create(cache_config(redis_url))
    up_a, up_b = Upstream(delay=1.0), Upstream(delay=0.0)
    try:
        slow = asyncio.ensure_future(a.respond("p/m", b"{}", up_a))
        await asyncio.sleep(0.03)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await b.respond("p/m", b"{}", up_b, deadline=start + 0.1)
        assert loop.time() - start < 0.5 and up_b.calls == 1
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_still_answers_and_coalesces_locally(
    refused_url: str, cache_config: Callable[..., Any]
) -> None:
    warned: list[Any] = []
    state, up = State.create(cache_config(refused_url), on_warning=warned.append), Upstream()
    try:
        results = await asyncio.gather(*(state.respond("p/m", b"{}", up) for _ in range(5)))
        assert up.calls == 1 and {r.text for r in results} == {"answer 1"}
        assert (await state.respond("p/m", b"{}", up)).text == "answer 2"  # no cache
        assert len(warned) == 1
    finally:
        await state.aclose()
