"""Response cache and fail-soft stores, against memory and a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from engine.result import Attempt, Response, ToolCall, Usage
from engine.runtime.state import Guard, ResponseCache, State, StateWarning
from engine.runtime.state.memory import MemoryStore

RESP = Response(
    text="hello",
    provider="openai",
    model="gpt-4o-mini",
    finish_reason="stop",
    tool_calls=(ToolCall("c1", "lookup", '{"q":"x"}'),),
    usage=Usage(12, 3),
    cost=0.0001,
    latency=0.5,
    attempts=(Attempt("openai/gpt-4o-mini", "ok", 200),),
    raw={"big": "body"},
    native={
        "content": [{"type": "text", "text": "hello", "citations": [{"url": "u"}]}],
        "stop_reason": "end_turn",
    },
)


def test_key_is_sha256_of_target_and_body() -> None:
    k = ResponseCache.key("openai/gpt-4o-mini", '{"a":1}')
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == ResponseCache.key("openai/gpt-4o-mini", b'{"a":1}')
    assert k != ResponseCache.key("openai/gpt-4o", '{"a":1}')
    assert k != ResponseCache.key("openai/gpt-4o-mini", '{"a":2}')
    # the separator keeps (target, body) pairs apart
    assert ResponseCache.key("a", "bc") != ResponseCache.key("ab", "c")


def test_key_from_a_prefix_is_the_same_key() -> None:
    prefix = ResponseCache.prefix("openai/gpt-4o-mini")
    assert ResponseCache.key_of(prefix, b'{"a":1}') == ResponseCache.key("openai/gpt-4o-mini", b'{"a":1}')
    # the prefix is not consumed: the next key starts from it again
    assert ResponseCache.key_of(prefix, b'{"a":2}') == ResponseCache.key("openai/gpt-4o-mini", b'{"a":2}')


async def test_a_lazy_entry_is_built_on_its_first_hit_only(cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config("memory"))
    built: list[int] = []

    def make() -> Response:
        built.append(1)
        return Response(text="hello", provider="openai", model="gpt-4o-mini", cached=True)

    try:
        key = state.responses.key("openai/gpt-4o-mini", "{}")
        state.responses.keep_lazy(key, make)
        assert built == []  # a miss that is never hit costs no Response
        first, second = state.responses.peek(key), await state.responses.get(key)
        assert first is not None and first.cached and first.text == "hello"
        assert second is first and built == [1]
    finally:
        await state.aclose()


async def test_set_then_get_marks_cached(backend: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(backend))
    try:
        key = state.responses.key("openai/gpt-4o-mini", "{}")
        assert await state.responses.get(key) is None
        await state.responses.set(key, RESP)
        hit = await state.responses.get(key)
        assert hit is not None and hit.cached
        assert (hit.text, hit.provider, hit.model, hit.finish_reason) == (
            "hello",
            "openai",
            "gpt-4o-mini",
            "stop",
        )
        assert hit.tool_calls == RESP.tool_calls and hit.usage == RESP.usage
        assert hit.cost == RESP.cost
        assert hit.attempts == () and hit.raw is None and hit.latency == 0.0
        assert hit.native == RESP.native  # the provider's own answer is kept, on either backend
    finally:
        await state.aclose()


async def test_entries_expire_after_ttl(backend: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(backend, responses_ttl=0.15))
    try:
        key = state.responses.key("t", "b")
        await state.responses.set(key, RESP)
        assert await state.responses.get(key) is not None
        await asyncio.sleep(0.25)
        assert await state.responses.get(key) is None
    finally:
        await state.aclose()


async def test_no_ttl_stores_nothing(backend: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(backend, responses_ttl=None))
    try:
        key = state.responses.key("t", "b")
        await state.responses.set(key, RESP)
        assert await state.responses.get(key) is None
    finally:
        await state.aclose()


async def test_clear_and_delete_touch_only_responses(backend: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(backend))
    try:
        k1, k2 = state.responses.key("t", "1"), state.responses.key("t", "2")
        await state.responses.set(k1, RESP)
        await state.responses.set(k2, RESP)
        await state.registry._store.set("x:y", ["m"], 60)
        await state.responses.delete(k1)
        assert await state.responses.get(k1) is None and await state.responses.get(k2) is not None
        await state.responses.clear()
        assert await state.responses.get(k2) is None
        assert await state.registry._store.get("x:y") == ["m"]
    finally:
        await state.aclose()


async def test_shared_between_instances(redis_url: str, cache_config: Callable[..., Any]) -> None:
    a, b = State.create(cache_config(redis_url)), State.create(cache_config(redis_url))
    try:
        key = a.responses.key("t", "b")
        await a.responses.set(key, RESP)
        hit = await b.responses.get(key)
        assert hit is not None and hit.cached and hit.text == "hello"
    finally:
        await a.aclose()
        await b.aclose()


async def test_foreign_entry_is_a_miss(redis_url: str, cache_config: Callable[..., Any]) -> None:
    state = State.create(cache_config(redis_url))
    try:
        await state.responses._store.set("k", {"v": 99}, 60)
        assert await state.responses.get("k") is None
    finally:
        await state.aclose()


async def test_redis_down_degrades_to_a_quick_miss(
    refused_url: str, cache_config: Callable[..., Any]
) -> None:
    warnings: list[StateWarning] = []
    state = State.create(cache_config(refused_url), on_warning=warnings.append)
    try:
        key = state.responses.key("t", "b")
        assert await state.responses.get(key) is None
        await state.responses.set(key, RESP)  # no raise
        assert await state.responses.get(key) is None
        assert state.guard.failures == 1  # one connect tried; the cool-down skips the rest
        assert [w.event for w in warnings] == ["degraded"]  # once per outage, not per call
        assert warnings[0].operation == "cache.get"
        assert "Connection" in warnings[0].error or "connect" in warnings[0].error.lower()
        assert state.guard.degraded
    finally:
        await state.aclose()


async def test_guard_times_out_reports_once_then_recovers() -> None:
    seen: list[StateWarning] = []
    guard = Guard(seen.append, timeout=0.05, cooldown=0.0)

    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    async def fast() -> int:
        return 2

    start = time.perf_counter()
    assert await guard.run("op", slow, -1) == -1
    assert time.perf_counter() - start < 1
    assert await guard.run("op", slow, -1) == -1
    assert await guard.run("op", fast, -1) == 2
    assert [(w.event, w.operation) for w in seen] == [("degraded", "op"), ("recovered", "op")]
    assert seen[0].error.startswith("TimeoutError")
    assert guard.failures == 2 and not guard.degraded


async def test_guard_skips_the_backend_while_cooling_down() -> None:
    calls = 0

    async def boom() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    guard = Guard(lambda w: None, cooldown=60)
    for _ in range(5):
        assert await guard.run("op", boom, 0) == 0
    assert calls == 1 and not guard.available


async def test_a_broken_listener_does_not_fail_the_call() -> None:
    def listener(w: StateWarning) -> None:
        raise RuntimeError("listener bug")

    async def boom() -> int:
        raise ConnectionError("down")

    guard = Guard(listener)
    assert await guard.run("op", boom, 7) == 7


def test_warning_text() -> None:
    w = StateWarning("degraded", "cache.get", "ConnectionError: refused")
    assert str(w) == "shared state degraded during cache.get: ConnectionError: refused"


async def test_the_memory_store_is_bounded_oldest_written_first() -> None:
    store = MemoryStore(max_entries=100)
    await store.set("expired", 1, 0.001)
    await asyncio.sleep(0.01)
    for i in range(100):
        await store.set(f"k{i}", i, 60)
    await store.set("k0", "again", 60)  # rewritten: now the newest
    await store.set("k100", 100, None)  # no ttl: kept until evicted
    assert len(store) <= 100
    assert await store.get("expired") is None  # expired entries go first
    assert await store.get("k0") == "again" and await store.get("k100") == 100
    assert await store.get("k1") is None  # then the oldest written
    assert await store.get("k99") == 99
    for i in range(1000):
        await store.set(f"more{i}", i, 60)
    assert 90 <= len(store) <= 100
