"""The telemetry recorder's own cost per request, in-process: no network, no event loop.

One answered request (one try) is recorded again and again through ``Telemetry`` as the engine
builds it, with metrics on (plain numbers; and prometheus_client's own objects, what multiprocess mode
uses), then with metrics and traces on (the OTel SDK, a
``BatchSpanProcessor`` with an exporter that drops the spans), interleaved in rounds; the median
round is kept. Beside them, the floors: the same metric adds on the same label children with
nothing of the engine's around them, and the OTel SDK making the same two spans with the same
attributes. The recorder's cost less its floor is what the engine's own code adds.

Run: ``.venv/bin/python bench/recorder.py`` (a few seconds); ``bench/overhead.py --telemetry``
prints these rows under its telemetry table.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODEL, REQUEST
from prometheus_client import CollectorRegistry

from engine.compiler import compile_text
from engine.result import Attempt, Response, Usage
from engine.telemetry import Telemetry
from engine.telemetry.health import HealthTracker

ROUTES = f"""\
version: 1
telemetry: {{metrics: true, traces: TRACES}}
providers:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-bench, models: [{MODEL}]}}
routes:
  - {{match: {{}}, to: up/{MODEL}}}
"""
ATTEMPT = Attempt(f"up/{MODEL}", "ok", 200, latency=0.0003)
ANSWER = Response(
    "hello",
    "up",
    MODEL,
    finish_reason="stop",
    usage=Usage(12, 5),
    attempts=(ATTEMPT,),
    raw={"id": "chatcmpl-bench"},
)


class _NoExport:
    """A span exporter that drops every span."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _provider(exporter: Any, batch: bool = True) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def _telemetry(traces: bool, provider: Any = None, multiprocess: bool = False) -> tuple[Telemetry, Any]:
    graph = compile_text(ROUTES.replace("TRACES", "true" if traces else "false"))
    tel = Telemetry.for_graph(
        graph,
        registry=CollectorRegistry(),
        windows=HealthTracker(),
        tracer_provider=provider,
        multiprocess=multiprocess,
    )
    return tel, graph.routes[0]


def recorded(traces: bool = False, multiprocess: bool = False) -> Callable[[], None]:
    """One request through the recorder, as ``Engine.route()`` feeds it (``multiprocess``:
    prometheus_client's own metric objects, as with ``PROMETHEUS_MULTIPROC_DIR``)."""
    tel, route = _telemetry(traces, _provider(_NoExport()) if traces else None, multiprocess)
    request = {**REQUEST, "model": MODEL}

    def one() -> None:
        rec = tel.request_started(route, MODEL, request)
        rec.try_ended(ATTEMPT)
        rec.ended(ANSWER)

    return one


def adds_floor(multiprocess: bool = False) -> Callable[[], None]:
    """The adds one request makes, on label children bound beforehand, and nothing else."""
    tel, _ = _telemetry(False, multiprocess=multiprocess)
    m = tel._metrics
    assert m is not None
    rs, ts = m.route("0"), m.target(f"up/{MODEL}")
    ops = m.operation_series(("chat", "openai", MODEL, MODEL))
    requests = m.instruments.requests.labels("0", "ok")
    tries = m.instruments.tries.labels(f"up/{MODEL}", "ok", "")
    del ts

    def one() -> None:
        rs.in_flight.inc()
        tries.inc()
        rs.in_flight.dec()
        requests.inc()
        rs.duration.observe(0.0004)
        rs.overhead["route"].observe(0.0001)
        ops.duration.observe(0.0003)
        ops.input.observe(12)
        ops.output.observe(5)

    return one


def sdk_floor() -> Callable[[], None]:
    """The OTel SDK making the request's two spans, with the attributes the recorder gives them."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    tel, route = _telemetry(True, _provider(memory, batch=False))
    rec = tel.request_started(route, MODEL, {**REQUEST, "model": MODEL})
    rec.try_ended(ATTEMPT)
    rec.ended(ANSWER)
    child, parent = memory.get_finished_spans()
    tracer = _provider(_NoExport()).get_tracer("engine")
    kind = trace.SpanKind.CLIENT
    p_attrs, c_attrs = dict(parent.attributes or {}), dict(child.attributes or {})

    def one() -> None:
        end = time.time_ns()
        span = tracer.start_span(parent.name, kind=kind, attributes=p_attrs, start_time=end - 400_000)
        ctx = trace.set_span_in_context(span)
        tracer.start_span(child.name, ctx, kind, c_attrs, start_time=end - 300_000).end(end_time=end)
        span.end()

    return one


def costs(traces: bool = True, rounds: int = 9, n: int = 2000) -> dict[str, float]:
    """Microseconds per request of each row, the median of ``rounds`` interleaved rounds."""
    rows: dict[str, Callable[[], None]] = {
        "recorder, metrics on": recorded(False),
        "  plain-number adds alone (same adds)": adds_floor(),
        "recorder, metrics on, prometheus_client objs": recorded(False, multiprocess=True),
        "  prometheus_client adds alone (same adds)": adds_floor(multiprocess=True),
    }
    if traces:
        rows["recorder, metrics + traces (batch)"] = recorded(True)
        rows["  OTel SDK alone (same two spans)"] = sdk_floor()
    for fn in rows.values():
        for _ in range(200):
            fn()
    out: dict[str, list[float]] = {k: [] for k in rows}
    names = list(rows)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = rows[name]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            out[name].append((time.perf_counter() - t) / n * 1e6)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> int:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        traced = False
    else:
        traced = True
    for name, us in costs(traced).items():
        print(f"{name:<44} {us:8.1f} us/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
