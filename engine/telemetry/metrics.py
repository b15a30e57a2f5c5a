"""The Prometheus instruments (``prometheus_client``), their names, labels and buckets.

The OpenTelemetry GenAI client metrics, in Prometheus naming (``gen_ai.client.operation.duration``
in seconds is ``gen_ai_client_operation_duration_seconds``), with the conventions' bucket
boundaries, and the engine's own ``engine_*`` metrics. Instruments are made once per registry and
shared by every ``Metrics`` on it (two engines on one registry add to the same series). Label
children are cached, so a recorded value is a dict lookup and the client's own locked add.

With ``PROMETHEUS_MULTIPROC_DIR`` set (a multi-worker gateway) the values live in that directory,
the gauges say how workers combine (in flight: the live workers' sum; a circuit: the most recent
value), and ``exposition()`` / ``snapshot()`` read every worker's values.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CIRCUIT_STATES", "GENAI_LABELS", "CollectorRegistry", "Metrics", "snapshot_of"]

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


class _Instruments:
    """Every instrument, registered once on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._genai(registry)
        self._requests(registry)
        self._state(registry)

    def _genai(self, r: CollectorRegistry) -> None:
        """The OpenTelemetry GenAI client metrics."""
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration: one try against a provider.",
            GENAI_LABELS,
            registry=r,
            buckets=_DURATION,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used, per answered try.",
            (*GENAI_LABELS[:-1], "gen_ai_token_type"),
            registry=r,
            buckets=_TOKENS,
        )
        self.first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from sending a streamed request to its first chunk.",
            GENAI_LABELS[:-1],
            registry=r,
            buckets=_FIRST_CHUNK,
        )
        self.per_chunk = Histogram(
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "Time per output chunk after the first (a stream's mean).",
            GENAI_LABELS[:-1],
            registry=r,
            buckets=_PER_CHUNK,
        )

    def _requests(self, r: CollectorRegistry) -> None:
        """Requests, tries, retries and failovers."""
        self.requests = Counter(
            "engine_requests", "Routed requests by route and outcome.", ("route", "outcome"), registry=r
        )
        self.request_duration = Histogram(
            "engine_request_duration_seconds",
            "Whole routed request, every try and wait included.",
            ("route",),
            registry=r,
            buckets=_DURATION,
        )
        self.tries = Counter(
            "engine_tries",
            "Tries by target, outcome and error kind.",
            ("target", "outcome", "error_kind"),
            registry=r,
        )
        self.retries = Counter("engine_retries", "Tries retried on the same target.", ("target",), registry=r)
        self.failovers = Counter(
            "engine_failovers", "Tries that moved on to the next target.", ("target",), registry=r
        )

    def _state(self, r: CollectorRegistry) -> None:
        """Circuits, the cache, rate limits, requests in flight, cost and the engine's overhead."""
        self.circuit = Gauge(
            "engine_circuit_state",
            "Circuit state: 0 closed, 1 half open, 2 open.",
            ("circuit",),
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.cache_hits = Counter(
            "engine_cache_hits", "Requests answered from the response cache.", ("route",), registry=r
        )
        self.cache_misses = Counter(
            "engine_cache_misses", "Cacheable requests the cache did not hold.", ("route",), registry=r
        )
        self.limit_waits = Counter(
            "engine_rate_limit_waits", "Waits for client-side rate-limit room.", ("target",), registry=r
        )
        self.limit_wait_seconds = Counter(
            "engine_rate_limit_wait_seconds",
            "Time spent waiting for rate-limit room.",
            ("target",),
            registry=r,
        )
        self.limit_skips = Counter(
            "engine_rate_limit_skips", "Targets skipped: rate limit used up.", ("target",), registry=r
        )
        self.in_flight = Gauge(
            "engine_requests_in_flight",
            "Routed requests in progress.",
            ("route",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cost = Counter(
            "engine_cost_usd",
            "Cost in USD of answered requests, from the config's prices.",
            ("provider", "model"),
            registry=r,
        )
        self.overhead = Histogram(
            "engine_overhead_seconds",
            "Time in the engine, the wait for the upstream, backoff and rate-limit waits excluded.",
            ("mode",),
            registry=r,
            buckets=_OVERHEAD,
        )


class Metrics:
    """The instruments of one registry, with cached label children."""

    __slots__ = ("_children", "_i", "registry")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        inst = _SHARED.get(self.registry)
        if inst is None:
            inst = _SHARED[self.registry] = _Instruments(self.registry)
        self._i = inst
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- what the recorder calls ----------------------------------------------------------------

    def started(self, route: str) -> None:
        self._child(self._i.in_flight, route).inc()

    def ended(self, route: str, outcome: str, duration: float, overhead: float, mode: str) -> None:
        i = self._i
        self._child(i.in_flight, route).dec()
        self._child(i.requests, route, outcome).inc()
        self._child(i.request_duration, route).observe(duration)
        self._child(i.overhead, mode).observe(max(overhead, 0.0))

    def try_ended(self, target: str, outcome: str, kind: str | None) -> None:
        i = self._i
        self._child(i.tries, target, outcome, kind or "").inc()
        if outcome == "retry":
            self._child(i.retries, target).inc()
        elif outcome == "failover":
            self._child(i.failovers, target).inc()
        elif outcome == "skipped" and kind == "rate_limited":
            self._child(i.limit_skips, target).inc()

    def operation(self, labels: tuple[str, str, str, str, str], duration: float) -> None:
        """One GenAI operation (a try that reached a provider); ``labels`` as ``GENAI_LABELS``."""
        self._child(self._i.duration, *labels).observe(duration)

    def usage(self, labels: tuple[str, str, str, str], input_tokens: int, output_tokens: int) -> None:
        self._child(self._i.tokens, *labels, "input").observe(input_tokens)
        self._child(self._i.tokens, *labels, "output").observe(output_tokens)

    def stream(self, labels: tuple[str, str, str, str], first: float | None, per_chunk: float | None) -> None:
        if first is not None:
            self._child(self._i.first_chunk, *labels).observe(first)
        if per_chunk is not None:
            self._child(self._i.per_chunk, *labels).observe(per_chunk)

    def cost(self, provider: str, model: str, usd: float) -> None:
        self._child(self._i.cost, provider, model).inc(usd)

    def cache(self, route: str, hit: bool) -> None:
        self._child(self._i.cache_hits if hit else self._i.cache_misses, route).inc()

    def rate_limit_wait(self, target: str, seconds: float) -> None:
        self._child(self._i.limit_waits, target).inc()
        self._child(self._i.limit_wait_seconds, target).inc(seconds)

    def circuit(self, circuit: str, state: str) -> None:
        self._child(self._i.circuit, circuit).set(CIRCUIT_STATES.get(state, 2.0))

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
