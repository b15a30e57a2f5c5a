"""The telemetry wired into the engine, over real loopback HTTP against the fake: a scripted fault
scenario (retry, failover, circuit opening, cache hit, stream cut) produces exactly the counters,
gauges and spans it should (read back with ``prometheus_client``'s parser and the OTel SDK's
in-memory exporter), ``engine.health()`` scores, and with telemetry off nothing is recorded but
health."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine.api import Engine
from engine.errors import StreamInterrupted
from engine.fake import FakeServer
from engine.telemetry import NULL

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 1, backoff: {base: 10ms, factor: 2, max: 20ms}}
breakers:
  quick: {failures: 2, recovery: 30s}
cache:
  responses: {ttl: 10m}
telemetry: {traces: true}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456,
      models: {m: {price: {input: 1.0, output: 2.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-123456,
      models: {m: {price: {input: 3.0, output: 4.0}}}}
  brk: {kind: openai, base_url: "{fake}/brk/v1", api_key: key-brk-1, breaker: quick, models: {m: {}}}
groups:
  main: {targets: [a/m, b/m]}
  guarded: {targets: [brk/m, b/m]}
routes:
  - {match: {model: main}, to: main}
  - {match: {model: guarded}, to: guarded}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(eng: Engine) -> Samples:
    text = eng.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def series(got: Samples, name: str, **fixed: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` whose labels include ``fixed``, keyed by their other labels' values
    (in label name order); zero values left out."""
    out: dict[tuple[str, ...], float] = {}
    for (n, labels), v in got.items():
        ls = dict(labels)
        if n == name and v and all(ls.get(k) == w for k, w in fixed.items()):
            out[tuple(ls[k] for k in sorted(ls) if k not in fixed)] = v
    return out


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def _scenario(eng: Engine, fake: FakeServer, ask: Ask) -> list[Any]:
    """Retry, failover, a circuit opening then skipped, a cache hit, a stream cut (the routed
    requests at temperature 0: cacheable)."""
    fake.program("/a/", ["503"])
    one = await eng.route(ask("main", "one", temperature=0))  # a retried, then answers
    fake.program("/a/", ["503", "503"])
    two = await eng.route(ask("main", "two", temperature=0))  # a retried, fails over to b
    fake.program("/brk/", ["503"] * 2)
    three = await eng.route(
        ask("guarded", "three", temperature=0)
    )  # two failures open brk's circuit; b answers
    four = await eng.route(ask("guarded", "four", temperature=0))  # brk skipped (open)
    cached = await eng.route(ask("main", "one", temperature=0))  # the cache answers
    fake.program("/a/", ["die_after=3"])
    with pytest.raises(StreamInterrupted):
        async for _ in eng.stream(ask("main", "five six seven eight nine ten")):
            pass
    return [one, two, three, four, cached]


async def test_a_fault_scenario_produces_exactly_its_metrics(
    make: Make, fake: FakeServer, ask: Ask, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    registry = CollectorRegistry()
    eng = make(CONFIG, registry=registry, tracer_provider=spans[0])
    resps = await _scenario(eng, fake, ask)
    assert [[(a.target, a.outcome) for a in r.attempts] for r in resps] == [
        [("a/m", "retry"), ("a/m", "ok")],
        [("a/m", "retry"), ("a/m", "failover"), ("b/m", "ok")],
        [("brk/m", "retry"), ("brk/m", "failover"), ("b/m", "ok")],
        [("brk/m", "skipped"), ("b/m", "ok")],
        [("a/m", "cached")],
    ]
    got = samples(eng)
    assert series(got, "engine_requests_total") == {
        ("ok", "0"): 2,
        ("ok", "1"): 2,
        ("cached", "0"): 1,
        ("interrupted", "0"): 1,
    }
    assert series(got, "engine_tries_total") == {
        ("status", "retry", "a/m"): 2,
        ("", "ok", "a/m"): 1,
        ("status", "failover", "a/m"): 1,
        ("", "ok", "b/m"): 3,
        ("status", "retry", "brk/m"): 1,
        ("status", "failover", "brk/m"): 1,
        ("circuit_open", "skipped", "brk/m"): 1,
        ("", "cached", "a/m"): 1,
        ("reset", "fatal", "a/m"): 1,
    }
    assert series(got, "engine_retries_total") == {("a/m",): 2, ("brk/m",): 1}
    assert series(got, "engine_failovers_total") == {("a/m",): 1, ("brk/m",): 1}
    assert series(got, "engine_circuit_state") == {("brk",): 2.0}  # open
    assert series(got, "engine_cache_hits_total") == {("0",): 1}
    # one lookup per target reached: a, then a and b, then brk and b twice (never for a stream)
    assert series(got, "engine_cache_misses_total") == {("0",): 3, ("1",): 4}
    assert series(got, "engine_requests_in_flight") == {}  # every gauge back at 0
    assert series(got, "engine_overhead_seconds_count") == {("route",): 5, ("stream",): 1}
    cost = series(got, "engine_cost_usd_total")
    assert set(cost) == {("m", "a"), ("m", "b")}
    assert cost[("m", "a")] == pytest.approx(resps[0].cost)
    assert cost[("m", "b")] == pytest.approx(sum(r.cost for r in resps[1:4]))
    ops = series(got, "gen_ai_client_operation_duration_seconds_count", gen_ai_provider_name="openai")
    assert ops == {
        ("503", "chat", "m", ""): 5,  # the failed tries of a and brk
        ("", "chat", "m", "m"): 4,  # the answered tries (the cache hit made none)
        ("reset", "chat", "m", ""): 1,  # the stream cut
    }
    assert eng.metrics()["engine_requests_total"]["outcome=ok,route=1"] == 2


async def test_a_fault_scenario_produces_exactly_its_spans(
    make: Make, fake: FakeServer, ask: Ask, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    eng = make(CONFIG, registry=CollectorRegistry(), tracer_provider=spans[0])
    await _scenario(eng, fake, ask)
    finished: tuple[ReadableSpan, ...] = spans[1].get_finished_spans()
    requests = [s for s in finished if s.parent is None]
    assert Counter(s.name for s in requests) == {"chat main": 4, "chat guarded": 2}
    tries: dict[int, list[str]] = {}
    for s in finished:
        if s.parent is not None:
            assert s.attributes is not None
            tries.setdefault(s.parent.span_id, []).append(str(s.attributes["engine.attempt.outcome"]))
    by_request = sorted(tries.get(r.context.span_id, []) for r in requests)  # type: ignore[union-attr]
    assert by_request == sorted(
        [
            ["retry", "ok"],
            ["retry", "failover", "ok"],
            ["retry", "failover", "ok"],
            ["skipped", "ok"],
            ["cached"],
            ["fatal"],
        ]
    )
    cut = next(s for s in requests if tries.get(s.context.span_id) == ["fatal"])  # type: ignore[union-attr]
    assert cut.attributes is not None and cut.attributes["error.type"] == "StreamInterrupted"
    assert all("gen_ai.system" not in (s.attributes or {}) for s in finished)


async def test_health_scores_after_the_scenario(make: Make, fake: FakeServer, ask: Ask) -> None:
    eng = make(CONFIG, registry=CollectorRegistry())
    await _scenario(eng, fake, ask)
    health = eng.health()
    brk, a, b = health["brk"], health["a"], health["b"]
    assert (brk.circuit, brk.ok, brk.failures, brk.skipped, brk.score) == ("open", 0, 2, 1, 0.0)
    assert (a.circuit, a.ok, a.failures) == ("none", 1, 4)  # the stream cut counts against a
    assert a.score == pytest.approx(0.2, abs=0.01)  # 1 answered of 5, fast
    assert b.ok == 3 and b.failures == 0 and 0.9 < b.score <= 1.0
    assert b.p50 is not None and b.p95 is not None and 0 < b.p50 <= b.p95 < 1.0
    assert set(b.targets) == {"b/m"} and b.targets["b/m"].ok == 3
    assert brk.targets["brk/m"].skipped == 1


async def test_with_telemetry_off_health_is_still_kept(make: Make, fake: FakeServer, ask: Ask) -> None:
    eng = make(CONFIG.replace("telemetry: {traces: true}", "telemetry: {metrics: false}"))
    assert eng._core.telemetry.request_started(eng.graph.routes[0], "main") is NULL
    fake.program("/a/", ["503", "503"])
    await eng.route(ask("main", "off"))
    assert eng.metrics() == {} and eng.exposition() == b""
    health = eng.health()
    assert (health["a"].failures, health["b"].ok) == (2, 1)
    assert health["a"].score == 0.0 and health["b"].score > 0.9


async def test_telemetry_survives_a_reload(make: Make, fake: FakeServer, ask: Ask) -> None:
    registry = CollectorRegistry()
    eng = make(CONFIG, registry=registry)
    await eng.route(ask("main", "before"))
    eng.reload(graph=eng.graph)
    await eng.route(ask("main", "after"))
    assert series(samples(eng), "engine_requests_total") == {("ok", "0"): 2}
    assert eng.health()["a"].ok == 2


async def test_a_request_no_route_matches_is_counted(make: Make, fake: FakeServer, ask: Ask) -> None:
    eng = make(CONFIG, registry=CollectorRegistry())
    with pytest.raises(Exception, match="no route"):
        await eng.route(ask("nowhere"))
    assert series(samples(eng), "engine_requests_total") == {("no_route", "none"): 1}


async def test_estimate_prices_every_target_the_route_reaches(make: Make, ask: Ask) -> None:
    eng = make(CONFIG, registry=CollectorRegistry())
    req = ask("main", "x" * 400, max_tokens=100)  # 400 characters: 101 tokens in
    est = eng.estimate(req)
    assert list(est) == ["a/m", "b/m"]
    assert (est["a/m"].input_tokens, est["a/m"].output_tokens) == (101, 100)
    assert est["a/m"].cost == pytest.approx((101 * 1.0 + 100 * 2.0) / 1e6)
    assert est["b/m"].cost == pytest.approx((101 * 3.0 + 100 * 4.0) / 1e6)
    assert eng.estimate(ask("guarded", "hi"))["brk/m"].cost is None  # no price
    assert eng.estimate(ask("guarded", "hi"))["b/m"].output_tokens == 256  # the default
    assert eng.plan(req).to_dict()["targets"][0]["estimate"] == {
        "input_tokens": 101,
        "output_tokens": 100,
        "cost": est["a/m"].cost,
    }
