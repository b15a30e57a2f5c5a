"""Circuit storage: ``State.breaker_factory`` plugged into the executor's ``Circuits``. On Redis a
circuit opened by one instance is open for another (once its view is ``staleness`` old), exactly
one try of all instances probes it after recovery and its success closes it for all, a closed
circuit costs no round trip per try, and the keys live under the namespace and expire."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import redis
from purgatory import AsyncInMemoryUnitOfWork

from engine.graph import Breaker
from engine.runtime.breakers import Circuits
from engine.runtime.state import State
from engine.runtime.state.core import SharedUnitOfWork
from engine.runtime.state.redis_circuits import RedisCircuits

BREAKER = Breaker("test", failures=3, recovery=0.3)
STALENESS = 0.05  # seconds: how old an instance's view of the shared circuits may be


async def _fail(circuits: Circuits, name: str, times: int) -> None:
    for _ in range(times):
        token = await circuits.enter(name, BREAKER)
        assert token is not None
        await circuits.leave(token, True)


async def _succeed(circuits: Circuits, name: str, times: int) -> None:
    for _ in range(times):
        token = await circuits.enter(name, BREAKER)
        assert token is not None
        await circuits.leave(token, False)


def test_the_backend_picks_the_unit_of_work(cache_config: Callable[..., Any]) -> None:
    memory = State.create(cache_config("memory")).breaker_factory()
    assert isinstance(memory.uow, AsyncInMemoryUnitOfWork)
    redis = State.create(cache_config("redis://127.0.0.1:1/0")).breaker_factory(3, 0.3)
    assert isinstance(redis.uow, SharedUnitOfWork) and isinstance(redis.uow.shared, RedisCircuits)
    assert (redis.default_threshold, redis.default_ttl) == (3, 0.3)


async def test_a_circuit_opens_after_failures(backend: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(backend))
    try:
        circuits = Circuits(state.breaker_factory())
        await _fail(circuits, "openai", 3)
        assert await circuits.enter("openai", BREAKER) is None
        assert await circuits.enter("anthropic", BREAKER) is not None
    finally:
        await state.aclose()


async def test_a_circuit_opened_by_one_instance_is_skipped_by_another(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a = State.create(cache_config(redis_url), staleness=STALENESS)
    b = State.create(cache_config(redis_url), staleness=STALENESS)
    try:
        ca, cb = Circuits(a.breaker_factory()), Circuits(b.breaker_factory())
        await _fail(ca, "openai", 2)
        await _fail(cb, "openai", 1)  # failures add up across instances: b's opens it
        await asyncio.sleep(STALENESS)  # a's view of b's change may be that old
        assert await ca.enter("openai", BREAKER) is None
        assert await cb.enter("openai", BREAKER) is None
        await asyncio.sleep(BREAKER.recovery + 0.05)
        probe = await cb.enter("openai", BREAKER)  # half-open: b probes
        assert probe is not None
        await cb.leave(probe, False)  # the probe succeeds: closed for everyone
        token = await ca.enter("openai", BREAKER)
        assert token is not None
        await ca.leave(token, False)
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_leaves_each_instance_its_own_circuits(
    refused_url: str, cache_config: Callable[..., Any]
) -> None:
    warned: list[Any] = []
    state = State.create(cache_config(refused_url), on_warning=warned.append)
    try:
        circuits = Circuits(state.breaker_factory())
        await _fail(circuits, "openai", 3)  # counted here: Redis is not there to count them
        assert await circuits.enter("openai", BREAKER) is None
        assert circuits.state("openai") == "open"
        assert state.guard.failures == 1  # one connect attempt, then the cool-down skips Redis
        assert [w.operation for w in warned] == ["breakers.read"]
    finally:
        await state.aclose()


async def test_a_reload_that_changes_the_threshold_keeps_the_circuit_state(
    backend: str, cache_config: Callable[..., Any]
) -> None:
    """Two failures under ``failures: 5``; reloaded to ``failures: 3``, the third opens it (the
    count survived the new settings: a fresh circuit would need three more)."""
    loose, strict = Breaker("loose", failures=5, recovery=30), Breaker("strict", failures=3, recovery=30)
    state = State.create(cache_config(backend))
    try:
        circuits = Circuits(state.breaker_factory())
        for _ in range(2):
            token = await circuits.enter("openai", loose)
            assert token is not None
            await circuits.leave(token, True)
        token = await circuits.enter("openai", strict)
        assert token is not None
        await circuits.leave(token, True)
        assert await circuits.enter("openai", strict) is None
        assert circuits.state("openai") == "open"
        again = await circuits.factory.get_breaker("openai")  # what the store now holds
        assert (again.context.threshold, again.context.ttl) == (3, 30)
    finally:
        await state.aclose()


def _commands(url: str) -> int:
    """Commands the Redis at ``url`` has run (``INFO commandstats``), less the INFO calls."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def test_a_closed_circuit_costs_no_round_trip_per_try(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    state = State.create(cache_config(redis_url))
    try:
        circuits = Circuits(state.breaker_factory())
        await _succeed(circuits, "openai", 1)  # first use: the circuit's shared state is read
        before = _commands(redis_url)
        await _succeed(circuits, "openai", 1000)
        used = _commands(redis_url) - before
        assert used <= 100  # target: <= 0.1 per try; a view read costs 1 per staleness period
    finally:
        await state.aclose()


async def test_exactly_one_try_of_two_instances_claims_the_probe(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a = State.create(cache_config(redis_url), staleness=STALENESS)
    b = State.create(cache_config(redis_url), staleness=STALENESS)
    try:
        ca, cb = Circuits(a.breaker_factory()), Circuits(b.breaker_factory())
        await _succeed(cb, "openai", 1)  # b knows the circuit closed
        await _fail(ca, "openai", 3)
        await asyncio.sleep(BREAKER.recovery + 0.05)
        tokens = await asyncio.gather(*(c.enter("openai", BREAKER) for c in (ca, cb) * 5))
        probes = [t for t in tokens if t is not None]
        assert len(probes) == 1  # one probe, the nine others skip the half-open circuit
        await (ca if tokens.index(probes[0]) % 2 == 0 else cb).leave(probes[0], False)
        await asyncio.sleep(STALENESS)
        for c in (ca, cb):  # the probe closed it for everyone
            token = await c.enter("openai", BREAKER)
            assert token is not None
            await c.leave(token, False)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_success_anywhere_starts_the_count_again(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    a = State.create(cache_config(redis_url), staleness=STALENESS)
    b = State.create(cache_config(redis_url), staleness=STALENESS)
    try:
        ca, cb = Circuits(a.breaker_factory()), Circuits(b.breaker_factory())
        await _succeed(cb, "openai", 1)
        await _fail(ca, "openai", 2)  # 2 of 3
        await asyncio.sleep(STALENESS)
        await _succeed(cb, "openai", 1)  # b has seen the failures: its success resets them
        await _fail(ca, "openai", 2)  # 2 of 3 again, not 4
        assert await ca.enter("openai", BREAKER) is not None
        await _fail(cb, "openai", 1)  # the third in a row opens it
        assert await cb.enter("openai", BREAKER) is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_circuit_keys_live_under_the_namespace_and_expire(
    redis_url: str, cache_config: Callable[..., Any]
) -> None:
    config = dataclasses.replace(cache_config(redis_url), namespace="team-a")
    state = State.create(config)
    try:
        circuits = Circuits(state.breaker_factory())
        await _fail(circuits, "openai", 3)
    finally:
        await state.aclose()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.keys("*"))
        assert keys == ["team-a:cbr:c:openai", "team-a:cbr:v"]
        assert all(client.pttl(k) > 0 for k in keys)
        assert client.hget("team-a:cbr:c:openai", "s") == b"opened"
    finally:
        client.close()
