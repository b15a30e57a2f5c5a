"""The state layer wired into ``Engine``, against the fake provider, on both backends: the response
cache (hit, ``cache: false``, ``cache: refresh``, temperatures), single-flight of identical requests,
rate limits (fail over or wait), circuits shared through Redis, a Redis that is down, model
listings, and a reload that switches the backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import AllTargetsFailed, ProviderError
from engine.fake import FakeServer, refused_port
from engine.plan import PlanTreeGroup
from engine.runtime.events import StateChanged

ROOT = Path(__file__).resolve().parent.parent.parent

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 1, backoff: {base: 10ms, factor: 2, max: 40ms}}
breakers:
  quick: {failures: 2, recovery: 30s}
cache:
  backend: "{backend}"
  models: {ttl: 1h}
  responses: {ttl: 10m, max_temperature: 0.1}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456,
      models: {m: {price: {input: 1.0, output: 2.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-123456, models: {m: {}}}
  lim: {kind: openai, base_url: "{fake}/lim/v1", api_key: key-lim-1, limits: {rpm: 2},
        models: {m: {}}}
  brk: {kind: openai, base_url: "{fake}/brk/v1", api_key: key-brk-1, breaker: quick,
        models: {m: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-3-5-haiku-latest: {price: {input: 0.8, output: 4.0}}, mine: {}}}
  gem: {kind: gemini, base_url: "{fake}/gem", api_key: key-gem-1, models: {gemini-1.5-flash: {}}}
  oll: {kind: ollama, base_url: "{fake}/oll", models: {llama3.2: {}}}
  down: {kind: openai, base_url: "http://127.0.0.1:{refused}/v1", api_key: key-down-1}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  limited: {strategy: priority, targets: [lim/m, b/m]}
  limited_wait: {strategy: priority, on_limit: wait, targets: [lim/m, b/m]}
  guarded: {strategy: priority, targets: [brk/m, b/m]}
  race: {strategy: hedged, targets: [a/m, b/m], hedge_after: 50ms}
routes:
  - {match: {model: race}, to: race}
  - {match: {model: g}, to: g}
  - {match: {model: limited}, to: limited}
  - {match: {model: limited_wait}, to: limited_wait}
  - {match: {model: lim}, to: lim/m}
  - {match: {model: guarded}, to: guarded}
  - {match: {}, to: a/m}
""".replace("{refused}", str(refused_port()))


def ask(
    model: str = "g", text: str = "hello there", temperature: float | None = 0, **extra: Any
) -> dict[str, Any]:
    req: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if temperature is not None:
        req["temperature"] = temperature
    return req


def calls(fake: FakeServer, prefix: str) -> int:
    """Chat calls the fake received under ``/prefix/``."""
    return sum(
        n
        for path, n in fake.stats(log=False)["paths"].items()
        if path.startswith(f"/{prefix}/") and path.endswith("/chat/completions")
    )


# -- the response cache -------------------------------------------------------------------------


async def test_a_cacheable_request_is_answered_from_the_cache_the_second_time(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    first = await eng.route(ask())
    second = await eng.route(ask())
    assert calls(upstream, "a") == 1
    assert not first.cached and first.cost and first.cost > 0
    assert first.attempts[-1].outcome == "ok"
    assert second.cached
    assert (second.text, second.provider, second.model) == (first.text, "a", "m")
    assert second.usage == first.usage
    assert second.cost == 0.0  # nothing was spent on it
    assert [a.outcome for a in second.attempts] == ["cached"]
    assert second.attempts[0].target == "a/m" and second.attempts[0].status is None
    assert second.raw is None


async def test_the_cache_key_is_target_and_body(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    await eng.route(ask(text="one"))
    await eng.route(ask(text="two"))  # another body
    await eng.route(ask(text="one", max_tokens=5))  # another body
    assert calls(upstream, "a") == 3
    assert (await eng.route(ask(text="two"))).cached


async def test_metadata_cache_false_skips_the_cache(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    await eng.route(ask())
    resp = await eng.route(ask(metadata={"cache": False}))
    assert not resp.cached and calls(upstream, "a") == 2
    assert [a.outcome for a in resp.attempts] == ["ok"]


async def test_metadata_cache_refresh_replaces_the_entry(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/a", ["ok", "words=4"])
    first = await eng.route(ask())
    refreshed = await eng.route(ask(metadata={"cache": "refresh"}))
    assert not refreshed.cached and refreshed.text != first.text
    assert calls(upstream, "a") == 2
    again = await eng.route(ask())
    assert again.cached and again.text == refreshed.text
    assert calls(upstream, "a") == 2


@pytest.mark.parametrize("temperature", [0.7, None])
async def test_a_request_above_max_temperature_or_without_one_is_not_cached(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer, temperature: float | None
) -> None:
    eng = engine_for(CONFIG, backend)
    for _ in range(2):
        assert not (await eng.route(ask(temperature=temperature))).cached
    assert calls(upstream, "a") == 2


async def test_without_cache_responses_nothing_is_cached(
    engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    text = CONFIG.replace("  responses: {ttl: 10m, max_temperature: 0.1}\n", "")
    eng = engine_for(text)
    for _ in range(2):
        assert not (await eng.route(ask())).cached
    assert calls(upstream, "a") == 2


async def test_a_failed_answer_is_not_cached_and_failover_answers_are(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/a", ["503", "503"])  # both tries of a fail: b answers
    first = await eng.route(ask())
    assert first.provider == "b" and [a.outcome for a in first.attempts] == ["retry", "failover", "ok"]
    second = await eng.route(ask())
    # a is tried again (its failure was not cached) and answers; b's answer stays cached too
    assert second.provider == "a" and not second.cached
    assert (await eng.route(ask())).cached
    assert calls(upstream, "a") == 3 and calls(upstream, "b") == 1


async def test_streams_are_not_cached(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    for _ in range(2):
        events = [e async for e in eng.stream(ask())]
        assert events[-1].type == "done" and not events[-1].cached
    assert calls(upstream, "a") == 2


async def test_plan_reports_the_cache_decision(engine_for: Callable[..., Engine]) -> None:
    eng = engine_for(CONFIG)
    assert eng.plan(ask()).cache.cacheable is True
    assert eng.plan(ask(temperature=0.5)).cache.cacheable is False
    assert eng.plan(ask(metadata={"cache": False})).cache.cacheable is False


# -- single-flight --------------------------------------------------------------------------------


async def test_identical_requests_in_flight_go_upstream_once(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    req = ask(text="slow [[fake: latency=200ms]]")
    out = await asyncio.gather(*(eng.route(req) for _ in range(10)))
    assert calls(upstream, "a") == 1
    assert len({r.text for r in out}) == 1
    outcomes = sorted(r.attempts[-1].outcome for r in out)
    assert outcomes == ["coalesced"] * 9 + ["ok"]
    assert sum(r.cached for r in out) == 9
    assert all(len(r.attempts) == 1 for r in out)


async def test_requests_sharing_a_failed_flight_fail_over_without_trying_again(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/a", ["latency=150ms status=503", "503"])
    out = await asyncio.gather(*(eng.route(ask()) for _ in range(5)))
    assert calls(upstream, "a") == 2  # the leader's two tries only
    assert calls(upstream, "b") == 1  # and the followers share b's answer as well
    assert all(r.provider == "b" for r in out)
    followers = [r for r in out if r.attempts[0].outcome == "failover"]
    assert len(followers) == 4
    assert "shared an identical request in flight" in str(followers[0].attempts[0].error)
    assert "503" in str(followers[0].attempts[0].error)


async def test_a_non_failover_error_reaches_every_caller_with_its_own_attempts(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/a", ["latency=100ms status=400"])
    out = await asyncio.gather(*(eng.route(ask()) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(e, ProviderError) and e.status == 400 for e in out)
    assert calls(upstream, "a") == 1
    assert sorted(len(e.attempts) for e in out if isinstance(e, ProviderError)) == [1, 1, 1]


async def test_a_hedge_answered_from_the_cache_wins_and_the_slow_one_is_cancelled(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/a", ["latency=400ms", "latency=400ms"])
    first = await eng.route(ask("race"))
    assert first.provider == "b" and not first.cached
    second = await eng.route(ask("race"))  # a misses and is slow again; b's answer is cached
    assert second.provider == "b" and second.cached
    assert sorted((a.target, a.outcome) for a in second.attempts) == [("a/m", "cancelled"), ("b/m", "cached")]
    await asyncio.sleep(0.1)  # the cancelled hedges unwind
    state = eng._core.shared.state  # type: ignore[attr-defined]
    assert len(state.flights) == 0
    assert calls(upstream, "b") == 1


def test_route_sync_uses_the_cache(backend: str, upstream: FakeServer) -> None:
    text = CONFIG.replace("{fake}", upstream.url).replace("{backend}", backend)
    with Engine.from_graph(compile_text(text, base_dir=ROOT, env={})) as eng:
        assert not eng.route_sync(ask()).cached
        assert eng.route_sync(ask()).cached
    assert calls(upstream, "a") == 1


# -- rate limits ----------------------------------------------------------------------------------


async def test_a_used_up_rate_limit_fails_over(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    out = [await eng.route(ask("limited", temperature=1)) for _ in range(3)]
    assert [r.provider for r in out] == ["lim", "lim", "b"]
    assert [(a.outcome, a.error) for a in out[2].attempts] == [("skipped", "rate limited"), ("ok", None)]
    assert calls(upstream, "lim") == 2


async def test_a_group_with_on_limit_wait_waits_for_room(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    eng._core.shared.state.limiter.window = 0.5  # type: ignore[attr-defined]  # a short window
    start = time.perf_counter()
    out = [await eng.route(ask("limited_wait", temperature=1)) for _ in range(3)]
    assert [r.provider for r in out] == ["lim", "lim", "lim"]
    assert time.perf_counter() - start > 0.4
    assert calls(upstream, "b") == 0


async def test_the_last_target_of_a_route_waits_within_its_deadline(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    limiter = eng._core.shared.state.limiter  # type: ignore[attr-defined]
    for _ in range(2):
        assert (await eng.route(ask("lim", temperature=1))).provider == "lim"
    start = time.perf_counter()  # room only in 60 s, after the deadline: refused at once
    with pytest.raises(AllTargetsFailed) as err:
        await eng.route(ask("lim", temperature=1))
    assert time.perf_counter() - start < 1
    assert [(a.outcome, a.error) for a in err.value.attempts] == [("skipped", "rate limited")]
    limiter.window = 0.5  # room within the deadline: the last target waits for it
    await asyncio.sleep(0.5)
    out = [await eng.route(ask("lim", temperature=1)) for _ in range(3)]
    assert [r.provider for r in out] == ["lim"] * 3
    assert out[2].latency > 0.3
    assert calls(upstream, "lim") == 5


async def test_cache_hits_do_not_count_against_the_rate_limit(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    out = [await eng.route(ask("limited")) for _ in range(5)]
    assert out[0].provider == "lim" and all(r.cached for r in out[1:])
    assert calls(upstream, "lim") == 1
    assert (await eng.route(ask("limited", text="another"))).provider == "lim"


async def test_streams_are_rate_limited(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    done = []
    for _ in range(3):
        events = [e async for e in eng.stream(ask("limited", temperature=1))]
        done.append(events[-1])
    assert [d.provider for d in done] == ["lim", "lim", "b"]
    assert done[2].attempts[0].error == "rate limited"


# -- circuits -------------------------------------------------------------------------------------


async def test_a_circuit_opened_by_one_engine_is_skipped_by_another_on_redis(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    one, two = engine_for(CONFIG, backend), engine_for(CONFIG, backend)
    upstream.program("/brk", ["503", "503"])
    first = await one.route(ask("guarded", temperature=1))
    assert first.provider == "b" and calls(upstream, "brk") == 2  # failures: 2, circuit open
    assert one.health()["brk"].circuit == "open"
    second = await two.route(ask("guarded", temperature=1))
    if backend == "memory":  # each engine has its own circuits
        assert second.provider == "brk" and calls(upstream, "brk") == 3
    else:
        assert second.provider == "b"
        skipped = second.attempts[0]
        assert (skipped.target, skipped.outcome, skipped.error) == ("brk/m", "skipped", "circuit open")
        assert calls(upstream, "brk") == 2
        assert two.health()["brk"].circuit == "open"  # learned from the shared store
        plan = two.plan(ask("guarded", temperature=1))
        assert isinstance(plan.tree, PlanTreeGroup)
        assert plan.tree.members[0].to_dict()["circuit"] == "open"
        assert plan.first_target == "b/m"


# -- a Redis that is down -----------------------------------------------------------------------


async def test_redis_down_degrades_to_no_shared_state_with_one_warning(
    refused_url: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, refused_url)
    events: list[StateChanged] = []
    eng.on("state", events.append)
    out = [await eng.route(ask()) for _ in range(3)]  # cacheable: the cache is asked first
    assert all(not r.cached and r.provider == "a" for r in out)
    limited = [await eng.route(ask("limited", temperature=1)) for _ in range(3)]
    assert all(r.provider == "lim" for r in limited)  # the limiter fails open
    guarded = await eng.route(ask("guarded", temperature=1))
    assert guarded.provider == "brk"  # circuits go unguarded
    streamed = [e async for e in eng.stream(ask("limited"))]
    assert streamed[-1].type == "done"
    assert len(events) == 1
    warning = events[0].warning
    assert events[0].type == "state" and warning.event == "degraded"
    assert "Connection" in warning.error or "connect" in warning.error.lower()


async def test_redis_coming_back_is_reported(
    redis_url: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, redis_url)
    state = eng._core.shared.state  # type: ignore[attr-defined]
    events: list[StateChanged] = []
    eng.on("state", events.append)
    state.guard.timeout, state.guard.cooldown = 0.00001, 0.05  # Redis too slow: degraded
    await eng.route(ask())
    state.guard.timeout = 0.25
    await asyncio.sleep(0.06)  # the cool-down is over: the next operation probes Redis
    await eng.route(ask())
    assert [e.warning.event for e in events] == ["degraded", "recovered"]


# -- model listings ---------------------------------------------------------------------------------


async def test_list_models_of_every_kind_through_the_engine(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    anth = await eng.list_models("anth")
    assert anth.names[:2] == ("claude-3-5-haiku-latest", "mine")  # declared first
    assert "claude-3-5-sonnet-latest" in anth
    declared = {m.name: m for m in anth.models}
    assert declared["claude-3-5-haiku-latest"].listed and declared["claude-3-5-haiku-latest"].price
    assert not declared["mine"].listed
    many = await eng.list_models_many(["a", "anth", "gem", "oll", "down"], timeout=3)
    assert list(many) == ["a", "anth", "gem", "oll", "down"]
    assert "gpt-4o-mini" in many["a"]  # type: ignore[operator]
    assert "gemini-1.5-pro" in many["gem"]  # type: ignore[operator]
    assert "qwen2.5:0.5b" in many["oll"]  # type: ignore[operator]
    assert isinstance(many["down"], ProviderError) and "connect" in str(many["down"])
    assert many["anth"].cached  # type: ignore[union-attr]
    gets = [e for e in upstream.requests if e["method"] == "GET"]
    assert len(gets) == 4  # anth once; a failed provider is not cached
    stats = eng.model_stats()
    assert (stats.hits, stats.misses, stats.size, stats.errors) == (1, 4, 4, 1)


async def test_list_models_errors_and_invalidation(
    backend: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, backend)
    upstream.program("/b", ["401"])
    with pytest.raises(ProviderError) as err:
        await eng.list_models("b")
    assert err.value.status == 401 and "key-b-123456" not in str(err.value)
    assert "b: model listing answered HTTP 401" in str(err.value)
    with pytest.raises(ValueError, match="did you mean 'anth'"):
        await eng.list_models("anthh")
    assert not (await eng.list_models("a")).cached
    assert (await eng.list_models("a")).cached
    await eng.invalidate_models("a")
    assert not (await eng.list_models("a")).cached
    assert not (await eng.list_models("a", refresh=True)).cached
    await eng.invalidate_models()
    assert not (await eng.list_models("a")).cached


async def test_list_models_is_shared_between_engines_on_redis(
    redis_url: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    one, two = engine_for(CONFIG, redis_url), engine_for(CONFIG, redis_url)
    await one.list_models("gem")
    assert (await two.list_models("gem")).cached


# -- reload ------------------------------------------------------------------------------------------


async def test_a_reload_to_another_backend_starts_a_new_state(
    redis_url: str, engine_for: Callable[..., Engine], upstream: FakeServer
) -> None:
    eng = engine_for(CONFIG, "memory")
    old = eng._core.shared.state  # type: ignore[attr-defined]
    await eng.route(ask())
    assert (await eng.route(ask())).cached
    same = compile_text(
        CONFIG.replace("{fake}", upstream.url).replace("{backend}", "memory").replace("ttl: 10m", "ttl: 20m"),
        base_dir=ROOT,
        env={},
    )
    eng.reload(graph=same)  # same backend: TTLs change, the cache stays
    assert eng._core.shared.state is old and old.responses.ttl == 1200  # type: ignore[attr-defined]
    assert (await eng.route(ask())).cached
    other = compile_text(
        CONFIG.replace("{fake}", upstream.url).replace("{backend}", redis_url), base_dir=ROOT, env={}
    )
    eng.reload(graph=other)
    assert eng._core.shared.state is not old  # type: ignore[attr-defined]
    assert not (await eng.route(ask())).cached  # a new, empty (Redis) cache
    assert (await eng.route(ask())).cached
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys("engine:resp*")
    finally:
        client.close()
    assert calls(upstream, "a") == 2
