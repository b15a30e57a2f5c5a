"""Rate limits: a burst above rpm/tpm is held back (wait or refuse), corrections count, and two
limiters on one Redis stay under one quota together. The window is shortened to keep tests quick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from engine.graph import Provider
from engine.runtime.state import State, estimate_tokens
from engine.runtime.state.memory import MemoryLimiter
from engine.runtime.state.redis import RedisLimiter

WINDOW = 0.4


async def _state(backend: str, cache_config: Callable[..., Any], **kw: Any) -> State:
    return State.create(cache_config(backend), window=WINDOW, **kw)


async def test_a_burst_above_rpm_is_refused_without_waiting(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        p = providers["rpm_only"]  # rpm 3
        got = [await state.limiter.acquire(p) for _ in range(5)]
        assert got == [True, True, True, False, False]  # a wait would last the minute's window
    finally:
        await state.aclose()


async def test_a_burst_waits_for_room_within_the_deadline(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        p = providers["rpm_only"]
        loop = asyncio.get_running_loop()
        for _ in range(3):
            assert await state.limiter.acquire(p)
        start = loop.time()
        assert await state.limiter.acquire(p, wait_until=start + 2)
        waited = loop.time() - start
        assert WINDOW * 0.8 < waited < WINDOW + 0.3
    finally:
        await state.aclose()


async def test_a_deadline_too_short_answers_false_at_once(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        p = providers["rpm_only"]
        loop = asyncio.get_running_loop()
        for _ in range(3):
            assert await state.limiter.acquire(p)
        start = loop.time()
        assert not await state.limiter.acquire(p, wait_until=start + WINDOW / 4)
        assert loop.time() - start < WINDOW / 4  # refused at once, not after waiting in vain
    finally:
        await state.aclose()


async def test_tpm_holds_back_and_record_corrects(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        p = providers["limited"]  # rpm 5, tpm 1000
        lim = state.limiter
        assert await lim.acquire(p, 400)
        assert await lim.acquire(p, 400)
        assert not await lim.acquire(p, 400)  # 1200 > 1000
        await lim.record(p, 100, 400)  # the first used only 100: 500 in the window
        await lim.flush()
        assert await lim.acquire(p, 400)  # 900
        await lim.record(p, 500, 400)  # one used more: 1000
        await lim.flush()
        assert not await lim.acquire(p, 1)
    finally:
        await state.aclose()


async def test_an_estimate_above_tpm_still_gets_through_an_empty_window(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        assert await state.limiter.acquire(providers["limited"], 10**6)
        assert not await state.limiter.acquire(providers["limited"], 1)
    finally:
        await state.aclose()


async def test_the_window_slides(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        p = providers["rpm_only"]
        for _ in range(3):
            assert await state.limiter.acquire(p)
        await asyncio.sleep(WINDOW + 0.05)
        assert [await state.limiter.acquire(p) for _ in range(4)] == [True, True, True, False]
    finally:
        await state.aclose()


async def test_providers_without_limits_are_never_held(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        assert all([await state.limiter.acquire(providers["free"], 10**9) for _ in range(50)])
        await state.limiter.record(providers["free"], 10, 5)  # no-op
    finally:
        await state.aclose()


async def test_limits_are_per_provider(
    backend: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    state = await _state(backend, cache_config)
    try:
        for _ in range(3):
            assert await state.limiter.acquire(providers["rpm_only"])
        assert await state.limiter.acquire(providers["limited"])
    finally:
        await state.aclose()


async def test_two_instances_share_one_quota(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    a, b = await _state(redis_url, cache_config), await _state(redis_url, cache_config)
    try:
        assert isinstance(a.limiter, RedisLimiter)
        p = providers["rpm_only"]
        got = await asyncio.gather(*(s.limiter.acquire(p) for s in (a, b) * 4))
        assert sum(got) == 3
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_waiting_instances_stay_under_rpm_in_every_window(
    redis_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    a, b = await _state(redis_url, cache_config), await _state(redis_url, cache_config)
    p = providers["rpm_only"]  # 3 per WINDOW
    loop = asyncio.get_running_loop()
    end = loop.time() + WINDOW * 3
    admitted: list[float] = []

    async def worker(s: State) -> None:
        while loop.time() < end:
            if await s.limiter.acquire(p, wait_until=end):
                admitted.append(loop.time())

    try:
        await asyncio.gather(*(worker(s) for s in (a, b, a, b)))
        assert 6 <= len(admitted) <= 12
        slack = 0.1  # admission (server time) vs when each worker saw it (local, scheduling)
        for t in admitted:
            in_window = [u for u in admitted if t <= u < t + WINDOW - slack]
            assert len(in_window) <= 3, admitted
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_fails_open_with_a_warning(
    refused_url: str, cache_config: Callable[..., Any], providers: Mapping[str, Provider]
) -> None:
    warned: list[Any] = []
    state = await _state(refused_url, cache_config, on_warning=warned.append)
    try:
        got = [await state.limiter.acquire(providers["rpm_only"]) for _ in range(5)]
        assert got == [True] * 5
        assert [w.operation for w in warned] == ["limits.acquire"]
    finally:
        await state.aclose()


def test_memory_limiter_is_the_memory_backend(cache_config: Callable[..., Any]) -> None:
    assert isinstance(State.create(cache_config("memory")).limiter, MemoryLimiter)


def test_estimate_tokens() -> None:
    req = {
        "system": "x" * 40,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "y" * 400},
            {"role": "user", "content": [{"type": "text", "text": "z" * 40}]},
        ],
    }
    assert estimate_tokens(req) == (40 + 400 + 40) // 4 + 1 + 100
    assert estimate_tokens({"messages": []}) == 1 + 256
