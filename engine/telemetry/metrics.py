"""The Prometheus instruments (``prometheus_client``), their names, labels and buckets.

The OpenTelemetry GenAI client metrics, in Prometheus naming (``gen_ai.client.operation.duration``
in seconds is ``gen_ai_client_operation_duration_seconds``), with the conventions' bucket
boundaries, and the engine's own ``engine_*`` metrics. Each engine keeps its values as plain
numbers (``plain.py``), exposed by one collector per registry that adds up every engine on it (two
engines on one registry report one series). Label
children are bound once per route, target and GenAI label set (``RouteSeries``, ``TargetSeries``,
``OperationSeries``), so a request records through attributes it already holds: no label tuple is
built or looked up per request beyond the outcome's.

With ``PROMETHEUS_MULTIPROC_DIR`` set (a multi-worker gateway) the instruments are
``prometheus_client``'s own, made once per registry, and the values live in that directory,
the gauges say how workers combine (in flight: the live workers' sum; a circuit: the most recent
value), and ``exposition()`` / ``snapshot()`` read every worker's values.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from engine.telemetry.plain import Family, Store, merge

__all__ = [
    "CIRCUIT_STATES",
    "GENAI_LABELS",
    "CollectorRegistry",
    "Metrics",
    "OperationSeries",
    "RouteSeries",
    "TargetSeries",
    "snapshot_of",
]

GENAI_LABELS: Final = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "error_type",
)
CIRCUIT_STATES: Final = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

# the GenAI conventions' explicit bucket boundaries
_DURATION: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKENS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_FIRST_CHUNK: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_PER_CHUNK: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_OVERHEAD: Final = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, _Instruments] = weakref.WeakKeyDictionary()


class PlainCollector(Collector):
    """Every store on one registry, added up at scrape time (held while the registry lives)."""

    def __init__(self) -> None:
        self.stores: list[Store] = []

    def describe(self) -> Iterator[Metric]:
        if self.stores:
            yield from (_family(f) for f in self.stores[0].families)

    def collect(self) -> Iterator[Metric]:
        if not self.stores:
            return
        for i, first in enumerate(self.stores[0].families):
            out = _family(first)
            merged = merge([s.families[i] for s in self.stores])
            for labels, child in merged.items():
                if first.kind == "histogram":
                    counts, total = child
                    cumulative = list(itertools.accumulate(counts))
                    out.add_metric(labels, list(zip(_les(first), cumulative, strict=True)), total)
                else:
                    out.add_metric(labels, child)
            yield out


def _family(f: Family) -> Any:
    """An empty family of ``f``'s type."""
    if f.kind == "counter":
        return CounterMetricFamily(f.name, f.doc, labels=f.labelnames)
    if f.kind == "gauge":
        return GaugeMetricFamily(f.name, f.doc, labels=f.labelnames)
    return HistogramMetricFamily(f.name, f.doc, labels=f.labelnames)


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, PlainCollector] = weakref.WeakKeyDictionary()


def attach(registry: CollectorRegistry, store: Store) -> None:
    """Expose ``store`` on ``registry`` (one collector per registry, registered on first use)."""
    collector = _COLLECTORS.get(registry)
    if collector is None:
        collector = PlainCollector()
        collector.stores.append(store)
        registry.register(collector)  # describe(): the names, so a clash is refused
        _COLLECTORS[registry] = collector
    else:
        collector.stores.append(store)


def _les(f: Family) -> list[str]:
    return [*(floatToGoString(b) for b in f.bounds), "+Inf"]  # type: ignore[no-untyped-call]


class _Kinds(Protocol):
    def counter(self, name: str, doc: str, labelnames: tuple[str, ...]) -> Any: ...
    def gauge(self, name: str, doc: str, labelnames: tuple[str, ...], mode: str) -> Any: ...
    def histogram(
        self, name: str, doc: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Any: ...


class _Prom:
    """``prometheus_client``'s own metric objects on a registry (what multiprocess mode sees)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.r = registry

    def counter(self, name: str, doc: str, labelnames: tuple[str, ...]) -> Any:
        return Counter(name, doc, labelnames, registry=self.r)

    def gauge(self, name: str, doc: str, labelnames: tuple[str, ...], mode: str) -> Any:
        return Gauge(name, doc, labelnames, registry=self.r, multiprocess_mode=mode)  # type: ignore[arg-type]

    def histogram(self, name: str, doc: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
        return Histogram(name, doc, labelnames, registry=self.r, buckets=buckets)


class _Instruments:
    """Every instrument: plain numbers in a ``Store`` or ``prometheus_client``'s objects."""

    def __init__(self, k: _Kinds) -> None:
        self._genai(k)
        self._requests(k)
        self._state(k)

    def _genai(self, k: _Kinds) -> None:
        """The OpenTelemetry GenAI client metrics."""
        self.duration = k.histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration: one try against a provider.",
            GENAI_LABELS,
            _DURATION,
        )
        self.tokens = k.histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used, per answered try.",
            (*GENAI_LABELS[:-1], "gen_ai_token_type"),
            _TOKENS,
        )
        self.first_chunk = k.histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from sending a streamed request to its first chunk.",
            GENAI_LABELS[:-1],
            _FIRST_CHUNK,
        )
        self.per_chunk = k.histogram(
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "Time per output chunk after the first (a stream's mean).",
            GENAI_LABELS[:-1],
            _PER_CHUNK,
        )

    def _requests(self, k: _Kinds) -> None:
        """Requests, tries, retries and failovers."""
        self.requests = k.counter(
            "engine_requests", "Routed requests by route and outcome.", ("route", "outcome")
        )
        self.request_duration = k.histogram(
            "engine_request_duration_seconds",
            "Whole routed request, every try and wait included.",
            ("route",),
            _DURATION,
        )
        self.tries = k.counter(
            "engine_tries",
            "Tries by target, outcome and error kind.",
            ("target", "outcome", "error_kind"),
        )
        self.retries = k.counter("engine_retries", "Tries retried on the same target.", ("target",))
        self.failovers = k.counter("engine_failovers", "Tries that moved on to the next target.", ("target",))

    def _state(self, k: _Kinds) -> None:
        """Circuits, the cache, rate limits, requests in flight, cost and the engine's overhead."""
        self.circuit = k.gauge(
            "engine_circuit_state",
            "Circuit state: 0 closed, 1 half open, 2 open.",
            ("circuit",),
            "mostrecent",
        )
        self.cache_hits = k.counter(
            "engine_cache_hits", "Requests answered from the response cache.", ("route",)
        )
        self.cache_misses = k.counter(
            "engine_cache_misses", "Cacheable requests the cache did not hold.", ("route",)
        )
        self.limit_waits = k.counter(
            "engine_rate_limit_waits", "Waits for client-side rate-limit room.", ("target",)
        )
        self.limit_wait_seconds = k.counter(
            "engine_rate_limit_wait_seconds",
            "Time spent waiting for rate-limit room.",
            ("target",),
        )
        self.limit_skips = k.counter(
            "engine_rate_limit_skips", "Targets skipped: rate limit used up.", ("target",)
        )
        self.in_flight = k.gauge(
            "engine_requests_in_flight",
            "Routed requests in progress.",
            ("route",),
            "livesum",
        )
        self.cost = k.counter(
            "engine_cost_usd",
            "Cost in USD of answered requests, from the config's prices.",
            ("provider", "model"),
        )
        self.overhead = k.histogram(
            "engine_overhead_seconds",
            "Time in the engine, the wait for the upstream, backoff and rate-limit waits excluded.",
            ("mode",),
            _OVERHEAD,
        )


class RouteSeries:
    """The children of one route, bound once: what a request's start and end record."""

    __slots__ = ("_requests", "duration", "in_flight", "label", "overhead", "parent")

    def __init__(self, parent: Metrics, label: str) -> None:
        i = parent.instruments
        self.parent, self.label = parent, label
        self.in_flight = i.in_flight.labels(label)
        self.duration = i.request_duration.labels(label)
        self.overhead = {mode: i.overhead.labels(mode) for mode in ("route", "stream")}
        self._requests: dict[str, Any] = {}

    def ended(self, outcome: str, duration: float, overhead: float, mode: str) -> None:
        self.in_flight.dec()
        child = self._requests.get(outcome)
        if child is None:
            child = self._requests[outcome] = self.parent.instruments.requests.labels(self.label, outcome)
        child.inc()
        self.duration.observe(duration)
        self.overhead[mode].observe(overhead if overhead > 0.0 else 0.0)


class TargetSeries:
    """The try counters of one target, bound once (each outcome's on its first use)."""

    __slots__ = ("_tries", "label", "parent")

    def __init__(self, parent: Metrics, label: str) -> None:
        self.parent, self.label = parent, label
        self._tries: dict[tuple[str, str | None], Any] = {}

    def try_ended(self, outcome: str, kind: str | None) -> None:
        child = self._tries.get((outcome, kind))
        if child is None:
            child = self._tries[outcome, kind] = self.parent.instruments.tries.labels(
                self.label, outcome, kind or ""
            )
        child.inc()
        if outcome == "retry":
            self.parent.child(self.parent.instruments.retries, self.label).inc()
        elif outcome == "failover":
            self.parent.child(self.parent.instruments.failovers, self.label).inc()
        elif outcome == "skipped" and kind == "rate_limited":
            self.parent.child(self.parent.instruments.limit_skips, self.label).inc()


class OperationSeries:
    """The GenAI children of one (operation, provider, request model, response model): an
    answered try's duration and token counts, a stream's chunk timings (bound on first use)."""

    __slots__ = ("_first", "_per_chunk", "duration", "input", "labels", "output", "parent")

    def __init__(self, parent: Metrics, labels: tuple[str, str, str, str]) -> None:
        i = parent.instruments
        self.parent, self.labels = parent, labels
        self.duration = i.duration.labels(*labels, "")
        self.input = i.tokens.labels(*labels, "input")
        self.output = i.tokens.labels(*labels, "output")
        self._first: Any = None
        self._per_chunk: Any = None

    def answered(self, duration: float, input_tokens: int, output_tokens: int) -> None:
        self.duration.observe(duration)
        self.input.observe(input_tokens)
        self.output.observe(output_tokens)

    def stream(self, first: float | None, per_chunk: float | None) -> None:
        if first is not None:
            if self._first is None:
                self._first = self.parent.instruments.first_chunk.labels(*self.labels)
            self._first.observe(first)
        if per_chunk is not None:
            if self._per_chunk is None:
                self._per_chunk = self.parent.instruments.per_chunk.labels(*self.labels)
            self._per_chunk.observe(per_chunk)


class Metrics:
    """The instruments of one registry, with label children bound once: per route, per target,
    per GenAI label set (all of bounded cardinality), and any other by ``child``."""

    __slots__ = ("_children", "_operations", "_routes", "_targets", "instruments", "registry")

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess: bool | None = None
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        if multiprocess is None:
            multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if multiprocess:  # prometheus_client's objects, made once per registry and shared
            inst = _SHARED.get(self.registry)
            if inst is None:
                inst = _SHARED[self.registry] = _Instruments(_Prom(self.registry))
        else:  # this engine's own plain numbers, added to the registry's other stores at scrape
            store = Store()
            inst = _Instruments(store)
            attach(self.registry, store)
        self.instruments = inst
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._routes: dict[str, RouteSeries] = {}
        self._targets: dict[str, TargetSeries] = {}
        self._operations: dict[tuple[str, str, str, str], OperationSeries] = {}

    def child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def route(self, label: str) -> RouteSeries:
        series = self._routes.get(label)
        if series is None:
            series = self._routes[label] = RouteSeries(self, label)
        return series

    def target(self, label: str) -> TargetSeries:
        """A target's series (target labels come from routes.yaml: bounded)."""
        series = self._targets.get(label)
        if series is None:
            series = self._targets[label] = TargetSeries(self, label)
        return series

    def operation_series(self, labels: tuple[str, str, str, str]) -> OperationSeries:
        """``labels`` as ``GENAI_LABELS`` without ``error_type`` (models already bounded)."""
        series = self._operations.get(labels)
        if series is None:
            series = self._operations[labels] = OperationSeries(self, labels)
        return series

    # -- the rarer events -----------------------------------------------------------------------

    def failed_operation(self, labels: tuple[str, str, str, str, str], duration: float) -> None:
        """A try that reached a provider and failed; ``labels`` as ``GENAI_LABELS``."""
        self.child(self.instruments.duration, *labels).observe(duration)

    def cost(self, provider: str, model: str, usd: float) -> None:
        self.child(self.instruments.cost, provider, model).inc(usd)

    def cache(self, route: str, hit: bool) -> None:
        i = self.instruments
        self.child(i.cache_hits if hit else i.cache_misses, route).inc()

    def rate_limit_wait(self, target: str, seconds: float) -> None:
        self.child(self.instruments.limit_waits, target).inc()
        self.child(self.instruments.limit_wait_seconds, target).inc(seconds)

    def circuit(self, circuit: str, state: str) -> None:
        self.child(self.instruments.circuit, circuit).set(CIRCUIT_STATES.get(state, 2.0))

    # -- reading --------------------------------------------------------------------------------

    def _collected(self) -> CollectorRegistry:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        return merged

    def exposition(self) -> bytes:
        """The Prometheus text format of every series (every worker's, in multiprocess mode)."""
        return generate_latest(self._collected())

    def snapshot(self) -> dict[str, dict[str, float]]:
        return snapshot_of(self._collected().collect())


def snapshot_of(families: Iterable[Any]) -> dict[str, dict[str, float]]:
    """Sample name -> ``"label=value,..."`` (sorted; empty labels left out) -> value; the
    ``_created`` timestamps are left out."""
    out: dict[str, dict[str, float]] = {}
    for family in families:
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            key = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if v != "")
            out.setdefault(s.name, {})[key] = float(s.value)
    return out
