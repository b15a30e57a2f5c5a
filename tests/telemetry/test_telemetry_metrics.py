"""The metrics a scripted request produces, read back from the Prometheus text format."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Clock, samples, series, value
from prometheus_client import CollectorRegistry

from engine.errors import AllTargetsFailed, DeadlineExceeded, NoRouteError, ProviderError
from engine.graph import RoutingGraph, TelemetryConfig
from engine.result import Attempt, Done, Response, Usage
from engine.telemetry import NULL, Telemetry

ROOT = Path(__file__).resolve().parents[2]
OP = "gen_ai_client_operation_duration_seconds"
TOKENS = "gen_ai_client_token_usage"


def _answer(attempts: tuple[Attempt, ...], **kw: object) -> Response:
    base: dict[str, object] = dict(
        text="hi",
        provider="anth",
        model="claude-3-5-haiku-20241022",
        usage=Usage(120, 30),
        cost=0.000216,
        attempts=attempts,
    )
    base.update(kw)
    return Response(**base)  # type: ignore[arg-type]


def _retry_failover_ok(tel: Telemetry, graph: RoutingGraph, clock: Clock) -> Response:
    """oa: 503 retried, then a timeout fails over; groq: skipped (rate limit); anth answers."""
    rec = tel.request_started(graph.routes[0], "chat", {"model": "chat"})
    tries = (
        Attempt("oa/gpt-4o-mini", "retry", 503, latency=0.2, kind="status"),
        Attempt("oa/gpt-4o-mini", "failover", latency=2.0, kind="timeout"),
        Attempt("groq/llama-3.1-8b-instant", "skipped", kind="rate_limited"),
        Attempt("anth/claude-3-5-haiku-latest", "ok", 200, latency=0.5),
    )
    for a in tries:
        clock.now += a.latency
        rec.try_ended(a)
        if a.outcome == "retry":
            clock.now += 0.1
            rec.waited(0.1)
    clock.now += 0.004  # the engine's own time, beyond the upstream and the backoff
    response = _answer(tries)
    rec.ended(response)
    return response


def test_a_retried_failed_over_request_counts_every_try(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    _retry_failover_ok(tel, graph, clock)
    assert value(tel, "engine_requests_total", route="0", outcome="ok") == 1
    assert (
        value(tel, "engine_tries_total", target="oa/gpt-4o-mini", outcome="retry", error_kind="status") == 1
    )
    assert (
        value(tel, "engine_tries_total", target="oa/gpt-4o-mini", outcome="failover", error_kind="timeout")
        == 1
    )
    assert (
        value(
            tel,
            "engine_tries_total",
            target="groq/llama-3.1-8b-instant",
            outcome="skipped",
            error_kind="rate_limited",
        )
        == 1
    )
    assert (
        value(tel, "engine_tries_total", target="anth/claude-3-5-haiku-latest", outcome="ok", error_kind="")
        == 1
    )
    assert value(tel, "engine_retries_total", target="oa/gpt-4o-mini") == 1
    assert value(tel, "engine_failovers_total", target="oa/gpt-4o-mini") == 1
    assert value(tel, "engine_rate_limit_skips_total", target="groq/llama-3.1-8b-instant") == 1
    assert value(tel, "engine_requests_in_flight", route="0") == 0
    assert (
        abs(
            value(tel, "engine_cost_usd_total", provider="anth", model="claude-3-5-haiku-20241022") - 0.000216
        )
        < 1e-12
    )


def test_the_genai_operations_carry_provider_names_models_and_error_types(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    _retry_failover_ok(tel, graph, clock)
    base = {"gen_ai_operation_name": "chat"}
    oa = {
        **base,
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "",
    }
    assert value(tel, OP + "_count", **oa, error_type="503") == 1
    assert value(tel, OP + "_count", **oa, error_type="timeout") == 1
    anth = {
        **base,
        "gen_ai_provider_name": "anthropic",
        "gen_ai_request_model": "claude-3-5-haiku-latest",
        "gen_ai_response_model": "claude-3-5-haiku-20241022",
    }
    assert value(tel, OP + "_count", **anth, error_type="") == 1
    assert value(tel, OP + "_sum", **anth, error_type="") == 0.5
    assert value(tel, TOKENS + "_sum", **anth, gen_ai_token_type="input") == 120
    assert value(tel, TOKENS + "_sum", **anth, gen_ai_token_type="output") == 30
    # the skipped groq try sent nothing: no operation
    assert not [s for s in series(tel, OP + "_count") if s["gen_ai_provider_name"] == "groq"]
    # never a streaming metric for a whole answer
    assert series(tel, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == []


def test_engine_overhead_is_the_time_outside_the_upstream_and_the_waits(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    _retry_failover_ok(tel, graph, clock)
    assert value(tel, "engine_overhead_seconds_count", mode="route") == 1
    assert abs(value(tel, "engine_overhead_seconds_sum", mode="route") - 0.004) < 1e-9
    assert abs(value(tel, "engine_request_duration_seconds_sum", route="0") - 2.804) < 1e-9


def test_the_upstream_time_given_by_the_lifecycle_wins_over_the_attempt_latency(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    rec = tel.request_started(graph.routes[1], "gem")
    clock.now = 1.0
    rec.try_ended(Attempt("gem/gemini-2.0-flash", "ok", 200, latency=1.0), upstream=0.9)
    rec.ended(_answer(()))
    assert abs(value(tel, "engine_overhead_seconds_sum", mode="route") - 0.1) < 1e-9


def test_a_stream_records_time_to_first_chunk_and_per_chunk(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    rec = tel.request_started(graph.routes[1], "gem", stream=True)
    clock.now = 0.1  # a failed first try
    rec.try_ended(Attempt("gem/gemini-2.0-flash", "retry", 500, latency=0.1, kind="status"))
    clock.now = 0.4  # the second try sent at 0.1: its first chunk at 0.4
    rec.first_chunk()
    clock.now = 1.4  # 11 chunks: 10 gaps over one second
    ok = Attempt("gem/gemini-2.0-flash", "ok", 200, latency=1.3)
    rec.try_ended(ok)
    rec.ended(Done("gem", "gemini-2.0-flash", usage=Usage(5, 11), attempts=(ok,)), chunks=11)
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "gcp.gemini",
        "gen_ai_request_model": "gemini-2.0-flash",
        "gen_ai_response_model": "gemini-2.0-flash",
    }
    first = "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert abs(value(tel, first + "_sum", **labels) - 0.3) < 1e-9
    per = "gen_ai_client_operation_time_per_output_chunk_seconds"
    assert value(tel, per + "_count", **labels) == 1
    assert abs(value(tel, per + "_sum", **labels) - 0.1) < 1e-9
    assert value(tel, "engine_overhead_seconds_count", mode="stream") == 1


def test_a_cached_answer_counts_a_hit_and_no_operation(tel: Telemetry, graph: RoutingGraph) -> None:
    rec = tel.request_started(graph.routes[0], "chat")
    rec.cache_lookup(True)
    hit = Attempt("oa/gpt-4o-mini", "cached", latency=0.001)
    rec.try_ended(hit)
    rec.ended(_answer((hit,), cached=True, cost=0.0, provider="oa", model="gpt-4o-mini"))
    rec = tel.request_started(graph.routes[0], "chat")
    rec.cache_lookup(False)
    rec.ended(AllTargetsFailed("every target failed", ()))
    assert value(tel, "engine_cache_hits_total", route="0") == 1
    assert value(tel, "engine_cache_misses_total", route="0") == 1
    assert value(tel, "engine_requests_total", route="0", outcome="cached") == 1
    assert value(tel, "engine_requests_total", route="0", outcome="failed") == 1
    assert value(tel, "engine_tries_total", target="oa/gpt-4o-mini", outcome="cached", error_kind="") == 1
    assert series(tel, OP + "_count") == []
    assert series(tel, "engine_cost_usd_total") == []


def test_errors_name_their_outcome_and_leave_nothing_in_flight(tel: Telemetry, graph: RoutingGraph) -> None:
    for error in (
        DeadlineExceeded("deadline"),
        ProviderError("bad", status=400),
        NoRouteError("no route"),
        KeyboardInterrupt(),
    ):
        tel.request_started(graph.routes[2], "x").ended(error)
    rec = tel.request_started(graph.routes[2], "x")
    assert value(tel, "engine_requests_in_flight", route="2") == 1
    rec.ended(None)
    outcomes = {
        s["outcome"]: value(tel, "engine_requests_total", **s) for s in series(tel, "engine_requests_total")
    }
    assert outcomes == {"deadline": 1, "provider_error": 1, "no_route": 1, "cancelled": 2}
    assert value(tel, "engine_requests_in_flight", route="2") == 0


def test_circuits_and_rate_limit_waits(tel: Telemetry, graph: RoutingGraph) -> None:
    tel.circuit_changed("oa", "open")
    tel.circuit_changed("anth/claude-3-5-haiku-latest", "half_open")
    rec = tel.request_started(graph.routes[0], "chat")
    rec.waited(0.25, target="groq/llama-3.1-8b-instant")
    rec.ended(AllTargetsFailed("failed"))
    assert value(tel, "engine_circuit_state", circuit="oa") == 2
    assert value(tel, "engine_circuit_state", circuit="anth/claude-3-5-haiku-latest") == 1
    tel.circuit_changed("oa", "closed")
    assert value(tel, "engine_circuit_state", circuit="oa") == 0
    assert value(tel, "engine_rate_limit_waits_total", target="groq/llama-3.1-8b-instant") == 1
    assert value(tel, "engine_rate_limit_wait_seconds_total", target="groq/llama-3.1-8b-instant") == 0.25


def test_pass_through_model_names_fold_to_the_provider(graph: RoutingGraph) -> None:
    tel = Telemetry.for_graph(graph, model_limit=3)
    for i in range(6):
        rec = tel.request_started(graph.routes[2], f"client-model-{i}")
        a = Attempt("local", "failover", 502, latency=0.1, kind="status")
        rec.try_ended(a)
        rec.ended(AllTargetsFailed("failed", (a,)))
    models = sorted(s["gen_ai_request_model"] for s in series(tel, OP + "_count"))
    assert models == ["client-model-0", "client-model-1", "client-model-2", "local/*"]
    # a model written in routes.yaml is always its own label, however many were folded
    rec = tel.request_started(graph.routes[0], "chat")
    rec.try_ended(Attempt("oa/gpt-4o-mini", "failover", 500, latency=0.1, kind="status"))
    assert "gpt-4o-mini" in {s["gen_ai_request_model"] for s in series(tel, OP + "_count")}


def test_engines_on_one_registry_share_the_series(graph: RoutingGraph) -> None:
    registry = CollectorRegistry()
    one, two = (Telemetry.for_graph(graph, registry=registry) for _ in range(2))
    one.request_started(graph.routes[0], "chat").ended(NoRouteError("x"))
    two.request_started(graph.routes[0], "chat").ended(NoRouteError("x"))
    assert one.registry is registry
    assert value(one, "engine_requests_total", route="0", outcome="no_route") == 2


def test_the_snapshot_is_a_plain_dict(tel: Telemetry, graph: RoutingGraph, clock: Clock) -> None:
    _retry_failover_ok(tel, graph, clock)
    snap = tel.metrics()
    assert snap["engine_requests_total"] == {"outcome=ok,route=0": 1.0}
    assert snap["engine_retries_total"] == {"target=oa/gpt-4o-mini": 1.0}
    assert snap["engine_cost_usd_total"] == {"model=claude-3-5-haiku-20241022,provider=anth": 0.000216}
    assert not [name for name in snap if name.endswith("_created")]


def test_everything_off_is_the_null_recorder(graph: RoutingGraph) -> None:
    tel = Telemetry(TelemetryConfig(metrics=False))
    rec = tel.request_started(graph.routes[0], "chat")
    assert rec is NULL
    rec.try_ended(Attempt("oa/gpt-4o-mini", "ok"))
    rec.first_chunk()
    rec.waited(1.0, target="oa")
    rec.cache_lookup(True)
    rec.ended(None)
    tel.circuit_changed("oa", "open")
    assert tel.metrics() == {}
    assert tel.exposition() == b""
    assert tel.registry is None


MULTI = textwrap.dedent("""
    import sys
    from engine.compiler import compile_text
    from engine.result import Attempt, Response, Usage
    from engine.telemetry import Telemetry
    sys.path.insert(0, {tests!r})
    from conftest import CONFIG
    graph = compile_text(CONFIG)
    tel = Telemetry.for_graph(graph)
    if sys.argv[1] == "work":
        rec = tel.request_started(graph.routes[0], "chat")
        ok = Attempt("oa/gpt-4o-mini", "ok", 200, latency=0.2)
        rec.try_ended(ok)
        rec.ended(Response("hi", "oa", "gpt-4o-mini", usage=Usage(3, 4), cost=0.5,
                           attempts=(ok,)))
        tel.request_started(graph.routes[0], "chat")  # still in flight when it exits
        tel.circuit_changed("oa", sys.argv[2])
    else:
        snap = tel.metrics()
        print(snap["engine_requests_total"], snap["engine_cost_usd_total"],
              snap["engine_requests_in_flight"], snap["engine_circuit_state"])
""")


def test_multiprocess_mode_adds_every_worker(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(MULTI.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "PYTHONPATH": str(ROOT)}
    (tmp_path / "prom").mkdir()

    def run(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, str(script), *args], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    run("work", "open")
    run("work", "closed")
    assert len(list((tmp_path / "prom").glob("*.db"))) >= 2  # each worker wrote its own file
    assert run("read") == (
        "{'outcome=ok,route=0': 2.0} {'model=gpt-4o-mini,provider=oa': 1.0} "
        "{'route=0': 2.0} {'circuit=oa': 0.0}"
    )


def _scenario(one: Telemetry, two: Telemetry, graph: RoutingGraph, clock: Clock) -> None:
    """Two engines on one registry: every kind of series, some of them from both."""
    _retry_failover_ok(one, graph, clock)
    _retry_failover_ok(two, graph, clock)
    rec = two.request_started(graph.routes[1], "gem", stream=True)
    rec.first_chunk()
    ok = Attempt("gem/gemini-2.0-flash", "ok", 200, latency=0.3)
    rec.try_ended(ok)
    rec.ended(Done("gem", "gemini-2.0-flash", usage=Usage(5, 11), attempts=(ok,)), chunks=3)
    hit = one.request_started(graph.routes[0], "chat")
    hit.cache_lookup(True)
    hit.ended(_answer((), cached=True))
    one.request_started(graph.routes[0], "chat").waited(0.25, target="oa/gpt-4o-mini")  # in flight
    two.request_started(graph.routes[0], "chat").ended(DeadlineExceeded("late"))
    one.circuit_changed("oa/gpt-4o-mini", "open")
    two.circuit_changed("oa/gpt-4o-mini", "half_open")  # the most recent wins


def test_plain_numbers_expose_what_prometheus_client_objects_do(graph: RoutingGraph, clock: Clock) -> None:
    """The default store (plain numbers, one collector per registry) against prometheus_client's
    own metric objects (multiprocess mode's), fed the same requests by two engines each."""
    found = []
    for multiprocess in (False, True):
        registry = CollectorRegistry()
        one, two = (
            Telemetry.for_graph(graph, registry=registry, clock=clock, multiprocess=multiprocess)
            for _ in range(2)
        )
        clock.now = 0.0
        _scenario(one, two, graph, clock)
        found.append({k: v for k, v in samples(one).items() if not k[0].endswith("_created")})
        assert one.metrics() == two.metrics()
    plain, prom = found
    assert plain == prom
    assert plain[("engine_requests_total", frozenset({("route", "0"), ("outcome", "ok")}))] == 2
    assert plain[("engine_requests_in_flight", frozenset({("route", "0")}))] == 1
    assert plain[("engine_circuit_state", frozenset({("circuit", "oa/gpt-4o-mini")}))] == 1
    le = frozenset({("mode", "route"), ("le", "0.005")})
    assert plain[("engine_overhead_seconds_bucket", le)] == 4  # 4 ms each, cumulative


def test_a_negative_counter_add_is_refused(tel: Telemetry) -> None:
    m = tel._metrics
    assert m is not None
    with pytest.raises(ValueError):
        m.cost("oa", "gpt-4o-mini", -1.0)
