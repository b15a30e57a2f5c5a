"""Spans with the OpenTelemetry SDK's in-memory exporter: names, parents, GenAI attributes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIG, Clock
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine.compiler import compile_text
from engine.errors import AllTargetsFailed
from engine.graph import RoutingGraph
from engine.result import Attempt, Response, Usage
from engine.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]
REQUEST = {
    "model": "chat",
    "max_tokens": 64,
    "temperature": 0.2,
    "messages": [{"role": "user", "content": "the secret recipe is 42"}],
}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _traced(
    exporter: InMemorySpanExporter, *, capture: bool = False
) -> tuple[Telemetry, RoutingGraph, TracerProvider]:
    text = CONFIG + f"telemetry: {{traces: true, capture_content: {str(capture).lower()}}}\n"
    graph = compile_text(text)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry.for_graph(graph, tracer_provider=provider, clock=Clock()), graph, provider


def _scenario(tel: Telemetry, graph: RoutingGraph) -> None:
    rec = tel.request_started(graph.routes[0], "chat", REQUEST)
    rec.try_ended(Attempt("oa/gpt-4o-mini", "failover", 503, latency=0.05, kind="status"), circuit="open")
    ok = Attempt("anth/claude-3-5-haiku-latest", "ok", 200, latency=0.02)
    rec.try_ended(ok)
    rec.ended(
        Response(
            "the answer is 42",
            "anth",
            "claude-3-5-haiku-20241022",
            finish_reason="stop",
            usage=Usage(10, 5, cache_read_tokens=4, reasoning_tokens=2),
            attempts=(ok,),
            raw={"id": "msg_01abc"},
        )
    )


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_one_span_per_request_and_one_child_per_try(exporter: InMemorySpanExporter) -> None:
    tel, graph, provider = _traced(exporter)
    with provider.get_tracer("caller").start_as_current_span("incoming") as parent:
        _scenario(tel, graph)
    spans = _by_name(exporter.get_finished_spans())
    assert set(spans) == {"incoming", "chat chat", "chat gpt-4o-mini", "chat claude-3-5-haiku-latest"}
    request = spans["chat chat"]
    assert request.parent is not None
    assert request.parent.span_id == parent.get_span_context().span_id
    assert request.kind is SpanKind.CLIENT
    for name in ("chat gpt-4o-mini", "chat claude-3-5-haiku-latest"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == request.context.span_id
        assert spans[name].context.trace_id == parent.get_span_context().trace_id
    failed = spans["chat gpt-4o-mini"]
    assert failed.end_time is not None and failed.start_time is not None
    assert abs((failed.end_time - failed.start_time) / 1e9 - 0.05) < 0.005


def test_the_genai_attributes(exporter: InMemorySpanExporter) -> None:
    tel, graph, _ = _traced(exporter)
    _scenario(tel, graph)
    spans = _by_name(exporter.get_finished_spans())
    attrs = dict(spans["chat chat"].attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["server.address"] == "api.anthropic.com" and attrs["server.port"] == 443
    assert attrs["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"] == "msg_01abc"
    assert attrs["gen_ai.usage.input_tokens"] == 10 and attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 4
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 2
    assert attrs["engine.route"] == "0" and attrs["engine.tries"] == 2
    assert attrs["engine.retries"] == 0 and attrs["engine.cache"] == "none"
    failed = dict(spans["chat gpt-4o-mini"].attributes or {})
    assert failed["gen_ai.provider.name"] == "openai"
    assert failed["error.type"] == "503"
    assert failed["engine.attempt.outcome"] == "failover"
    assert failed["engine.circuit"] == "open"
    assert failed["http.response.status_code"] == 503
    assert spans["chat gpt-4o-mini"].status.status_code is StatusCode.ERROR
    for span in spans.values():
        keys = set(span.attributes or {})
        assert "gen_ai.system" not in keys
        assert not keys & {"gen_ai.input.messages", "gen_ai.output.messages"}
        assert "42" not in json.dumps(dict(span.attributes or {}), default=str)


def test_content_only_with_capture_content(exporter: InMemorySpanExporter) -> None:
    tel, graph, _ = _traced(exporter, capture=True)
    _scenario(tel, graph)
    attrs = dict(_by_name(exporter.get_finished_spans())["chat chat"].attributes or {})
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "the secret recipe is 42"}]}
    ]
    out = json.loads(str(attrs["gen_ai.output.messages"]))
    assert out[0]["parts"] == [{"type": "text", "content": "the answer is 42"}]


def test_a_failed_request_span_is_an_error(exporter: InMemorySpanExporter) -> None:
    tel, graph, _ = _traced(exporter)
    rec = tel.request_started(graph.routes[0], "chat")
    skipped = Attempt("oa/gpt-4o-mini", "skipped", kind="circuit_open")
    rec.try_ended(skipped)
    rec.ended(AllTargetsFailed("every target failed", (skipped,)))
    spans = _by_name(exporter.get_finished_spans())
    request = spans["chat chat"]
    assert request.status.status_code is StatusCode.ERROR
    assert (request.attributes or {})["error.type"] == "AllTargetsFailed"
    child = spans["chat gpt-4o-mini"]
    assert (child.attributes or {})["error.type"] == "circuit_open"
    assert child.status.status_code is StatusCode.UNSET  # skipped: nothing was sent


NO_OTEL = """
import sys
{block}
from engine.compiler import compile_text
from engine.errors import NoRouteError
from engine.telemetry import Telemetry
sys.path.insert(0, {tests!r})
from conftest import CONFIG
graph = compile_text(CONFIG + {extra!r})
tel = Telemetry.for_graph(graph)
tel.request_started(graph.routes[0], "chat").ended(NoRouteError("x"))
print(tel.tracing is None, sorted(m for m, mod in sys.modules.items()
                                 if m.startswith("opentelemetry") and mod is not None))
"""


@pytest.mark.parametrize(
    ("block", "extra"),
    [
        ("", ""),  # traces off: no import
        ("sys.modules['opentelemetry'] = None", "telemetry: {traces: true}\n"),  # not installed
    ],
)
def test_no_opentelemetry_import_without_traces(block: str, extra: str) -> None:
    code = NO_OTEL.format(block=block, tests=str(Path(__file__).parent), extra=extra)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert out.stdout.strip() == "True []"
