"""What the bound series and the end-of-request spans change: labels folded on the tries of a
pass-through target, series made once and reused, spans parented where the request started,
try spans left out when the sampler drops the request, the target cache bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conftest import CONFIG, Clock, series, value
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from prometheus_client import CollectorRegistry

from engine.compiler import compile_text
from engine.graph import RoutingGraph
from engine.result import Attempt, Response, Usage
from engine.telemetry import Telemetry
from engine.telemetry import targets as targets_module


def _answer(provider: str, model: str, attempt: Attempt) -> Response:
    return Response("hi", provider, model, usage=Usage(3, 2), attempts=(attempt,))


def _ask(tel: Telemetry, graph: RoutingGraph, model: str, *, route: int = 2) -> None:
    """One answered request on ``route`` (2: the pass-through ``local`` target)."""
    rec = tel.request_started(graph.routes[route], model, {"model": model})
    ok = Attempt(f"local/{model}", "ok", 200, latency=0.01)
    rec.try_ended(ok)
    rec.ended(_answer("local", model, ok))


def test_a_pass_through_targets_tries_fold_like_its_models(graph: RoutingGraph, clock: Clock) -> None:
    tel = Telemetry.for_graph(graph, registry=CollectorRegistry(), clock=clock, model_limit=2)
    for model in ("m-a", "m-b", "m-c", "m-d"):
        _ask(tel, graph, model)
    targets = {s["target"] for s in series(tel, "engine_tries_total")}
    assert targets == {"local/m-a", "local/m-b", "local/*"}
    assert value(tel, "engine_tries_total", target="local/*", outcome="ok", error_kind="") == 2
    assert value(tel, "engine_tries_total", target="local/m-a", outcome="ok", error_kind="") == 1


def test_bound_series_keep_counting_across_requests(tel: Telemetry, graph: RoutingGraph) -> None:
    for _ in range(3):
        _ask(tel, graph, "gpt-4o-mini", route=2)
    metrics = tel._metrics
    assert metrics is not None
    assert metrics.route("2") is metrics.route("2")
    assert value(tel, "engine_requests_total", route="2", outcome="ok") == 3
    assert value(tel, "engine_requests_in_flight", route="2") == 0
    labels = dict(
        gen_ai_operation_name="chat",
        gen_ai_provider_name="openai",
        gen_ai_request_model="gpt-4o-mini",
        gen_ai_response_model="gpt-4o-mini",
        gen_ai_token_type="input",
    )
    assert value(tel, "gen_ai_client_token_usage_sum", **labels) == 9
    # a stream's chunk timings are series of their own, made only when a stream records them
    assert series(tel, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == []


def test_the_target_cache_is_bounded(graph: RoutingGraph, monkeypatch: Any) -> None:
    monkeypatch.setattr(targets_module, "_LIMIT", 3)
    tel = Telemetry.for_graph(graph, registry=CollectorRegistry(), clock=Clock())
    for i in range(10):
        info = tel.targets.get(f"local/model-{i}")
        assert info.key == f"local/model-{i}"
    assert len(tel.targets._infos) == 3


def _traced(
    sampler: Sampler | None = None,
) -> tuple[Telemetry, RoutingGraph, TracerProvider, InMemorySpanExporter]:
    graph = compile_text(CONFIG + "telemetry: {traces: true}\n")
    provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tel = Telemetry.for_graph(graph, tracer_provider=provider, clock=Clock())
    return tel, graph, provider, exporter


def test_the_request_span_is_parented_where_the_request_started() -> None:
    tel, graph, provider, exporter = _traced()
    with provider.get_tracer("caller").start_as_current_span("incoming") as incoming:
        rec = tel.request_started(graph.routes[0], "chat", {"model": "chat"})
    ok = Attempt("oa/gpt-4o-mini", "ok", 200, latency=0.01)
    rec.try_ended(ok)
    with provider.get_tracer("caller").start_as_current_span("elsewhere"):
        rec.ended(_answer("oa", "gpt-4o-mini", ok))  # ends under another current span
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request = spans["chat chat"]
    assert request.parent is not None
    assert request.parent.span_id == incoming.get_span_context().span_id
    child = spans["chat gpt-4o-mini"]
    assert child.parent is not None and child.parent.span_id == request.context.span_id
    assert child.context.trace_id == incoming.get_span_context().trace_id


class _DropRequests(Sampler):
    """Samples every span except the engine's request spans (``chat chat``)."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        decision = Decision.DROP if name == "chat chat" else Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision, attributes)

    def get_description(self) -> str:
        return "drop request spans"


def test_no_try_spans_when_the_request_span_is_dropped() -> None:
    tel, graph, _, exporter = _traced(_DropRequests())
    rec = tel.request_started(graph.routes[0], "chat", {"model": "chat"})
    ok = Attempt("oa/gpt-4o-mini", "ok", 200, latency=0.01)
    rec.try_ended(ok)
    rec.ended(_answer("oa", "gpt-4o-mini", ok))
    assert exporter.get_finished_spans() == ()
    # the metrics do not depend on the sampler
    assert value(tel, "engine_tries_total", target="oa/gpt-4o-mini", outcome="ok", error_kind="") == 1
