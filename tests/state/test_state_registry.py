"""Model registry against the fake provider's listings (all four kinds): merge with the config,
caching for models_ttl on both backends, invalidation, one fetch for concurrent cold lookups, and
many providers at once where a failing one does not stop the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer
from engine.graph import Provider, RoutingGraph
from engine.providers import get_kind
from engine.providers.base import WireError
from engine.runtime.state import Fetch, ModelListing, State
from engine.values import Secret

KEY = "sk-registry-test"


def _reveal(v: str | Secret | None) -> str | None:
    return v.reveal() if isinstance(v, Secret) else v


def make_fetch(client: httpx.AsyncClient, log: list[str] | None = None) -> Fetch:
    """What the transport supplies: GET with the provider's auth headers, JSON out."""

    async def fetch(provider: Provider, url: str) -> Any:
        if log is not None:
            log.append(provider.name)
        headers = get_kind(provider.kind).auth_headers(_reveal(provider.api_key))
        headers.update({k: str(_reveal(v)) for k, v in provider.headers.items()})
        r = await client.get(url, headers=headers)
        r.raise_for_status()
        return r.json()

    return fetch


@pytest.fixture
def fake(fake: FakeServer) -> FakeServer:
    """The session's fake provider, refusing any key but ``KEY`` for this test."""
    fake.require_key = KEY
    return fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


def config(fake: FakeServer, extra: int = 0) -> str:
    lines = ["version: 1", "providers:"]
    for kind in ("openai", "anthropic", "gemini", "ollama"):
        lines += [
            f"  {kind}:",
            f"    kind: {kind}",
            f"    base_url: {fake.base_url(kind)}",
            "    api_key: ${KEY}",
        ]
        if kind == "openai":
            lines.append(
                "    models: {my-finetune: {context: 8000}, gpt-4o-mini: {price: {input: 0.15, output: 0.6}}}"
            )
    for i in range(extra):
        lines += [
            f"  p{i}:",
            "    kind: openai",
            f"    base_url: {fake.base_url('openai', f'p{i}')}",
            "    api_key: ${KEY}",
        ]
    lines += ["routes:", "  - match: {}", "    to: openai"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def graph(fake: FakeServer, compile_graph: Callable[..., RoutingGraph]) -> RoutingGraph:
    return compile_graph(config(fake, extra=20), KEY=KEY)


@pytest.fixture
async def state(
    backend: str, cache_config: Callable[..., Any], client: httpx.AsyncClient
) -> AsyncIterator[State]:
    s = State.create(cache_config(backend), fetch=make_fetch(client))
    yield s
    await s.aclose()


def _models_calls(fake: FakeServer) -> int:
    return sum(n for path, n in fake.stats()["paths"].items() if "chat" not in path)


@pytest.mark.parametrize(
    "kind, expect",
    [
        ("openai", {"gpt-4o-mini", "gpt-4o"}),
        ("anthropic", {"claude-3-5-haiku-latest", "claude-3-5-sonnet-latest"}),
        ("gemini", {"gemini-1.5-flash", "gemini-1.5-pro"}),
        ("ollama", {"llama3.2:latest", "qwen2.5:0.5b"}),
    ],
)
async def test_each_kind_lists_its_models(
    kind: str, expect: set[str], state: State, graph: RoutingGraph
) -> None:
    listing = await state.registry.list_models(graph.providers[kind])
    assert expect <= set(listing.names)
    assert listing.provider == kind and not listing.cached


async def test_listing_merges_with_declared_models(state: State, graph: RoutingGraph) -> None:
    listing = await state.registry.list_models(graph.providers["openai"])
    by_name = {m.name: m for m in listing.models}
    assert listing.names[:2] == ("my-finetune", "gpt-4o-mini")  # declared first, config order
    assert (by_name["my-finetune"].declared, by_name["my-finetune"].listed) == (True, False)
    assert by_name["my-finetune"].context == 8000
    gpt = by_name["gpt-4o-mini"]
    assert gpt.declared and gpt.listed and gpt.price is not None and gpt.price.input == 0.15
    assert (by_name["gpt-4o"].declared, by_name["gpt-4o"].listed) == (False, True)
    assert "gpt-4o" in listing and "nope" not in listing


async def test_listings_are_cached_until_invalidated(
    state: State, graph: RoutingGraph, fake: FakeServer
) -> None:
    p = graph.providers["anthropic"]
    reg = state.registry
    first = await reg.list_models(p)
    second = await reg.list_models(p)
    assert second.cached and second.names == first.names
    assert _models_calls(fake) == 1
    s = reg.stats()
    assert (s.hits, s.misses, s.size, s.errors) == (1, 1, 1, 0)
    await reg.invalidate(p)
    assert reg.stats().size == 0
    assert not (await reg.list_models(p)).cached
    assert _models_calls(fake) == 2
    await reg.clear()
    assert not (await reg.list_models(p)).cached
    assert (await reg.list_models(p, refresh=True)).cached is False
    assert _models_calls(fake) == 4


async def test_listings_expire_after_models_ttl(
    backend: str,
    cache_config: Callable[..., Any],
    client: httpx.AsyncClient,
    graph: RoutingGraph,
    fake: FakeServer,
) -> None:
    state = State.create(cache_config(backend, models_ttl=0.15), fetch=make_fetch(client))
    try:
        p = graph.providers["gemini"]
        await state.registry.list_models(p)
        assert (await state.registry.list_models(p)).cached
        await asyncio.sleep(0.25)
        assert not (await state.registry.list_models(p)).cached
        assert state.registry.stats().size == 1
    finally:
        await state.aclose()


async def test_concurrent_cold_lookups_share_one_fetch(
    state: State, graph: RoutingGraph, fake: FakeServer
) -> None:
    results = await asyncio.gather(
        *(state.registry.list_models(graph.providers["ollama"]) for _ in range(10))
    )
    assert _models_calls(fake) == 1
    assert len({r.names for r in results}) == 1


async def test_many_providers_failures_do_not_stop_the_others(
    backend: str,
    cache_config: Callable[..., Any],
    client: httpx.AsyncClient,
    graph: RoutingGraph,
    fake: FakeServer,
) -> None:
    fake.program("/p3", ["status=500"] * 5)
    fake.program("/p7", ["latency=2s"])
    active = peak = 0
    inner = make_fetch(client)

    async def counting(provider: Provider, url: str) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await inner(provider, url)
        finally:
            active -= 1

    state = State.create(cache_config(backend), fetch=counting)
    try:
        ps = [graph.providers[f"p{i}"] for i in range(20)]
        loop = asyncio.get_running_loop()
        start = loop.time()
        out = await state.registry.list_models_many(ps, max_concurrency=5, timeout=0.5)
        assert loop.time() - start < 1.5
        assert list(out) == [p.name for p in ps]
        assert isinstance(out["p3"], httpx.HTTPStatusError)
        assert isinstance(out["p7"], TimeoutError)
        ok = [r for r in out.values() if isinstance(r, ModelListing)]
        assert len(ok) == 18 and all("gpt-4o" in r for r in ok)
        assert peak <= 5
        assert state.registry.stats().errors == 1  # the timeout is the caller's, not a fetch error
    finally:
        await state.aclose()


async def test_a_listing_the_kind_cannot_parse_raises(
    backend: str, cache_config: Callable[..., Any], graph: RoutingGraph
) -> None:
    async def fetch(provider: Provider, url: str) -> Any:
        return {"data": "not a list"}

    state = State.create(cache_config(backend), fetch=fetch)
    try:
        with pytest.raises(WireError):
            await state.registry.list_models(graph.providers["openai"])
        assert state.registry.stats().errors == 1
    finally:
        await state.aclose()


async def test_wrong_key_is_the_fetch_error(
    fake: FakeServer,
    client: httpx.AsyncClient,
    compile_graph: Callable[..., RoutingGraph],
    cache_config: Callable[..., Any],
) -> None:
    graph = compile_graph(config(fake), KEY="wrong")
    state = State.create(cache_config("memory"), fetch=make_fetch(client))
    with pytest.raises(httpx.HTTPStatusError) as info:
        await state.registry.list_models(graph.providers["openai"])
    assert info.value.response.status_code == 401
    await state.aclose()


async def test_no_fetch_function_is_a_clear_error(
    cache_config: Callable[..., Any], graph: RoutingGraph
) -> None:
    state = State.create(cache_config("memory"))
    with pytest.raises(RuntimeError, match="no fetch function"):
        await state.registry.list_models(graph.providers["openai"])


async def test_shared_between_instances(
    redis_url: str,
    cache_config: Callable[..., Any],
    client: httpx.AsyncClient,
    graph: RoutingGraph,
    fake: FakeServer,
) -> None:
    a = State.create(cache_config(redis_url), fetch=make_fetch(client))
    b = State.create(cache_config(redis_url), fetch=make_fetch(client))
    try:
        await a.registry.list_models(graph.providers["openai"])
        assert (await b.registry.list_models(graph.providers["openai"])).cached
        assert _models_calls(fake) == 1
    finally:
        await a.aclose()
        await b.aclose()
