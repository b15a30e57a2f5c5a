"""One contract per state protocol, held by both backends (memory and a real Redis): the stores
under the response cache and the listings, single-flight, the rate limiter, the model listings.
A new backend passes this module by adding its parameter to the ``backend`` fixture."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer
from engine.graph import Provider, RoutingGraph
from engine.result import Response, Usage
from engine.runtime.state import Backend, State

ANSWER = Response(text="hi", provider="p", model="m", usage=Usage(3, 1), cost=0.5)


@pytest.fixture
async def state(backend: str, cache_config: Callable[..., Any]) -> AsyncIterator[State]:
    s = State.create(cache_config(backend), window=0.3)
    yield s
    await s.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition()`` holds (an event, not a duration)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class Gated:
    """An upstream call that answers (or raises ``error``) once ``gate`` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.error = error

    async def __call__(self) -> Response:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return Response(text=f"answer {self.calls}", provider="p", model="m")


def test_the_backend_is_named_and_tells_whether_it_is_shared(state: State, backend: str) -> None:
    storage: Backend = state.storage
    assert storage.name == state.backend == ("memory" if backend == "memory" else "redis")
    assert storage.remote is state.remote is (backend != "memory")


# -- Store ---------------------------------------------------------------------------------------


async def test_a_store_keeps_values_until_their_ttl(state: State) -> None:
    store = state.storage.store("contract")
    assert await store.get("k") is None
    await store.set("k", {"n": [1, 2]}, 60)
    await store.set("short", ["x"], 0.2)
    assert await store.get("k") == {"n": [1, 2]}
    assert await store.get("short") == ["x"]
    await store.delete("k")
    assert await store.get("k") is None
    await asyncio.sleep(0.3)  # the TTL itself is what is tested
    assert await store.get("short") is None


async def test_clearing_a_store_leaves_the_other_namespaces(state: State) -> None:
    one, two = state.storage.store("one"), state.storage.store("two")
    await one.set("k", 1, 60)
    await two.set("k", 2, 60)
    await one.clear()
    assert (await one.get("k"), await two.get("k")) == (None, 2)


async def test_the_response_cache_answers_a_stored_response_as_cached(state: State) -> None:
    key = state.responses.key("endpoint", b'{"a":1}')
    await state.responses.set(key, ANSWER)
    hit = await state.responses.get(key)
    assert hit is not None and hit.cached and not ANSWER.cached
    assert (hit.text, hit.usage, hit.cost, hit.attempts) == ("hi", Usage(3, 1), 0.5, ())


# -- single-flight ------------------------------------------------------------------------------


async def test_identical_requests_in_flight_share_one_call(state: State) -> None:
    up = Gated()
    callers = [asyncio.ensure_future(state.respond("p/m", b"{}", up)) for _ in range(6)]
    await until(lambda: state.flights.joined == 5)
    up.gate.set()
    answers = await asyncio.gather(*callers)
    assert up.calls == 1 and {a.text for a in answers} == {"answer 1"}
    again = await state.respond("p/m", b"{}", up)
    assert again.cached and again.text == "answer 1" and up.calls == 1


async def test_a_failed_call_reaches_every_caller_and_stores_nothing(state: State) -> None:
    up = Gated(error=RuntimeError("upstream broke"))
    callers = [asyncio.ensure_future(state.respond("p/m", b"{}", up)) for _ in range(4)]
    await until(lambda: state.flights.joined == 3)
    up.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [str(r) for r in results] == ["upstream broke"] * 4 and up.calls == 1
    up.error = None
    assert not (await state.respond("p/m", b"{}", up)).cached and up.calls == 2


async def test_refresh_calls_and_replaces_the_entry(state: State) -> None:
    up = Gated()
    up.gate.set()
    await state.respond("p/m", b"{}", up)
    fresh = await state.respond("p/m", b"{}", up, refresh=True)
    assert not fresh.cached and fresh.text == "answer 2"
    assert (await state.respond("p/m", b"{}", up)).text == "answer 2"


async def test_flights_across_instances_run_an_uncontended_call_once(state: State) -> None:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        return "mine"

    assert await state.storage.flights.run("k", call, Texts(), deadline=None) == "mine"
    assert calls == [1]
    if state.remote:  # stored where another instance finds it: a hit, no call
        assert await state.storage.flights.run("k", call, Texts(), deadline=None) == "mine"
        assert calls == [1]


class Texts:
    """``Entries`` of plain strings (JSON text), kept a minute."""

    ttl = 60.0

    def dumps(self, value: str) -> str:
        return json.dumps(value)

    def loads(self, data: bytes | str) -> str | None:
        value = json.loads(data)
        return value if isinstance(value, str) else None


# -- RateLimiter --------------------------------------------------------------------------------


async def test_the_window_admits_rpm_requests_then_waits_or_refuses(
    state: State, providers: Mapping[str, Provider]
) -> None:
    limiter, p = state.limiter, providers["rpm_only"]  # rpm 3
    assert [await limiter.acquire(p) for _ in range(4)] == [True, True, True, False]
    assert await limiter.acquire(p, key="another endpoint")  # its own window
    loop = asyncio.get_running_loop()
    assert await limiter.acquire(p, wait_until=loop.time() + 2)  # room after the 0.3 s window


async def test_record_corrects_the_token_estimate(state: State, providers: Mapping[str, Provider]) -> None:
    limiter, p = state.limiter, providers["limited"]  # rpm 5, tpm 1000
    assert await limiter.acquire(p, 600)
    assert not await limiter.acquire(p, 600)  # 1200 > 1000
    await limiter.record(p, 100, 600)  # the answer used 100
    await limiter.flush()  # Redis: sent at once, not within limits.FLUSH
    assert await limiter.acquire(p, 600)  # 700


async def test_a_provider_without_limits_is_always_admitted(
    state: State, providers: Mapping[str, Provider]
) -> None:
    assert all([await state.limiter.acquire(providers["free"], 10**9) for _ in range(20)])


# -- listings -----------------------------------------------------------------------------------

KEY = "sk-contract"
LISTED = """\
version: 1
providers:
  up: {kind: openai, base_url: "BASE", api_key: "${KEY}", models: {mine: {context: 8000}}}
routes:
  - match: {}
    to: up
"""


@pytest.fixture
async def listed(
    state: State, compile_graph: Callable[..., RoutingGraph]
) -> AsyncIterator[tuple[State, Provider, list[str]]]:
    """The state with a fetch over loopback HTTP to a fake provider, its one provider, and the
    names of the providers fetched so far."""
    fetched: list[str] = []
    async with FakeServer(require_key=KEY) as fake, httpx.AsyncClient(timeout=5) as client:

        async def fetch(provider: Provider, url: str) -> Any:
            fetched.append(provider.name)
            r = await client.get(url, headers={"authorization": f"Bearer {KEY}"})
            r.raise_for_status()
            return r.json()

        state.registry.fetch = fetch
        graph = compile_graph(LISTED.replace("BASE", fake.base_url("openai")), KEY=KEY)
        yield state, graph.providers["up"], fetched


async def test_a_listing_is_fetched_once_then_cached_until_invalidated(
    listed: tuple[State, Provider, list[str]],
) -> None:
    state, up, fetched = listed
    cold = await asyncio.gather(*(state.registry.list_models(up) for _ in range(3)))
    assert fetched == ["up"] and not any(c.cached for c in cold)
    warm = await state.registry.list_models(up)
    assert warm.cached and warm.names == cold[0].names and warm.names[0] == "mine"
    assert "gpt-4o-mini" in warm
    await state.registry.invalidate(up)
    assert not (await state.registry.list_models(up)).cached and fetched == ["up", "up"]
