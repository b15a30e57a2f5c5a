"""The Redis limiter's leases, on a real Redis: a busy instance sends one admission script per
lease, not per request; what a lease did not spend goes back, so instances together admit
exactly the quota; a refused refill holds back the callers that waited for it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import redis

from engine.graph import Limits, Provider
from engine.runtime.state import State
from engine.runtime.state.redis_limiter import FLUSH, SHARE, RedisLimiter


def _limited(providers: Mapping[str, Provider], rpm: int | None, tpm: int | None = None) -> Provider:
    return dataclasses.replace(providers["free"], name="leased", limits=Limits(rpm=rpm, tpm=tpm))


def _scripts(url: str) -> int:
    """``EVALSHA`` + ``EVAL`` calls the server has run so far."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def _state(url: str, cache_config: Callable[..., Any], window: float) -> State:
    state = State.create(cache_config(url), window=window)
    assert isinstance(state.limiter, RedisLimiter)
    return state


async def _drain(state: State, p: Provider, tokens: int = 0) -> int:
    """Acquire until refused: how many were admitted."""
    n = 0
    while await state.limiter.acquire(p, tokens):
        n += 1
    return n


async def test_a_busy_instance_sends_one_script_per_lease(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(redis_url, cache_config, 60.0)
    p = _limited(providers, rpm=100_000, tpm=10**9)
    try:
        before = _scripts(redis_url)
        assert all([await state.limiter.acquire(p, 20) for _ in range(1000)])
        sent = _scripts(redis_url) - before
        assert sent <= 20  # leases of 1, 2, 4, ... requests; was 1,000 scripts
    finally:
        await state.aclose()


async def test_instances_together_admit_exactly_the_quota(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    rpm = 8 * SHARE  # leases of up to 8 requests
    p = _limited(providers, rpm=rpm)
    a, b = await _state(redis_url, cache_config, 60.0), await _state(redis_url, cache_config, 60.0)
    try:
        assert all([await a.limiter.acquire(p) for _ in range(40)])  # a holds part of a lease
        first = [40, *await asyncio.gather(_drain(b, p), _drain(b, p))]
        assert sum(first) < rpm  # b could not have what a holds
    finally:
        await a.aclose()  # gives back what its lease did not spend
        await b.aclose()
    c = await _state(redis_url, cache_config, 60.0)
    try:
        assert sum(first) + await _drain(c, p) == rpm
    finally:
        await c.aclose()


async def test_the_token_budget_is_shared_exactly(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    tpm = 100 * SHARE * 10  # leases of up to 100 requests of 10 tokens
    p = _limited(providers, rpm=None, tpm=tpm)
    a, b = await _state(redis_url, cache_config, 60.0), await _state(redis_url, cache_config, 60.0)
    try:
        assert all([await a.limiter.acquire(p, 10) for _ in range(40)])
        first = [40, *await asyncio.gather(_drain(b, p, 10), _drain(b, p, 10))]
        assert 10 * sum(first) < tpm
    finally:
        await a.aclose()
        await b.aclose()
    c = await _state(redis_url, cache_config, 60.0)
    try:
        assert 10 * (sum(first) + await _drain(c, p, 10)) == tpm
    finally:
        await c.aclose()


async def test_an_idle_lease_goes_back_by_itself(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    window = 2.0  # leases of 0.1 s
    rpm = 8 * SHARE
    p = _limited(providers, rpm=rpm)
    a, b = await _state(redis_url, cache_config, window), await _state(redis_url, cache_config, window)
    try:
        used = [await a.limiter.acquire(p) for _ in range(40)]  # a holds a lease it leaves unspent
        assert all(used)
        held = rpm - 40 - await _drain(b, p)
        assert 0 < held <= 8  # b is short of what a still holds
        await asyncio.sleep(window / 20 + FLUSH + 0.1)  # a's lease ends and goes back
        assert await _drain(b, p) == held
    finally:
        await a.aclose()
        await b.aclose()


async def test_callers_waiting_on_a_refused_refill_are_refused_with_it(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(redis_url, cache_config, 60.0)
    p = _limited(providers, rpm=2)
    try:
        assert await _drain(state, p) == 2
        before = _scripts(redis_url)
        got = await asyncio.gather(*(state.limiter.acquire(p) for _ in range(20)))
        assert not any(got)
        assert _scripts(redis_url) - before == 1  # one refill asked; the others took its answer
    finally:
        await state.aclose()
