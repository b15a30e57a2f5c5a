"""The OpenTelemetry Python SDK's own cost per span: the floor under ``traces: true``.

In-process, no engine: a bare span (no attributes), spans with 8 and 24 attributes passed at
``start_span`` (the slope is the cost per attribute), the same 24 set one ``set_attribute`` at a
time, and a request's two spans (a parent with 17 attributes, a child with 8, the shapes the
engine makes) — each under a ``BatchSpanProcessor`` with an exporter that drops the spans.
Interleaved rounds, the median kept.

Run: ``.venv/bin/python bench/otel_floor.py`` (a few seconds).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class _NoExport(SpanExporter):
    """Drops every span."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _attrs(n: int) -> dict[str, Any]:
    kinds: list[Any] = ["chat", 1024, 0.7, True, "gpt-4o-mini"]
    return {f"gen_ai.bench.attr_{i}": kinds[i % len(kinds)] for i in range(n)}


def rows(tracer: trace.Tracer) -> dict[str, Callable[[], None]]:
    kind = trace.SpanKind.CLIENT
    a8, a17, a24 = _attrs(8), _attrs(17), _attrs(24)

    def bare() -> None:
        tracer.start_span("chat m", kind=kind).end()

    def with_attrs(attrs: dict[str, Any]) -> Callable[[], None]:
        return lambda: tracer.start_span("chat m", kind=kind, attributes=attrs).end()

    def set_each() -> None:
        span = tracer.start_span("chat m", kind=kind)
        for k, v in a24.items():
            span.set_attribute(k, v)
        span.end()

    def two_spans() -> None:
        end = time.time_ns()
        span = tracer.start_span("chat m", kind=kind, attributes=a17, start_time=end - 400_000)
        ctx = trace.set_span_in_context(span)
        tracer.start_span("chat m", ctx, kind, a8, start_time=end - 300_000).end(end_time=end)
        span.end()

    return {
        "bare span": bare,
        "span, 8 attributes at start_span": with_attrs(a8),
        "span, 24 attributes at start_span": with_attrs(a24),
        "span, 24 attributes by set_attribute": set_each,
        "a request's two spans (17 + 8 attributes)": two_spans,
    }


def costs(rounds: int = 9, n: int = 3000) -> dict[str, float]:
    """Microseconds per call of each row, the median of ``rounds`` interleaved rounds."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_NoExport()))
    fns = rows(provider.get_tracer("bench"))
    for fn in fns.values():
        for _ in range(300):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            out[name].append((time.perf_counter() - t) / n * 1e6)
    provider.shutdown()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> int:
    got = costs()
    for name, us in got.items():
        print(f"{name:<44} {us:8.1f} us")
    slope = (got["span, 24 attributes at start_span"] - got["span, 8 attributes at start_span"]) / 16
    print(f"{'per attribute (slope 8 -> 24)':<44} {slope:8.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
