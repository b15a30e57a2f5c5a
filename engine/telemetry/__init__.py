"""What the engine records about each routed request: metrics, traces, the access log and health.

One ``Telemetry`` per engine (it outlives graph reloads); one recorder per routed request, fed by
the try lifecycle, so ``route()`` and ``stream()`` count alike. With every part off
(``metrics: false``, ``traces: false``, the ``engine.access`` logger disabled) ``request_started``
returns ``NULL``, whose methods do nothing: the cost is one call and three checks per request.

Call sites (engine/runtime):

```python
tel = Telemetry.for_graph(graph, registry=registry)        # Engine.__init__; reload: tel.use_graph(g)
rec = tel.request_started(route, request["model"], request, stream=False)  # route matched (None: none)
rec.cache_lookup(hit)                # a cacheable request looked in the response cache
rec.waited(seconds)                  # a backoff sleep before a retry (not engine overhead)
rec.waited(seconds, target=t.key)    # a wait for rate-limit room (counted, not overhead)
rec.try_ended(attempt, upstream)     # every Attempt as it is made (skipped, cached, hedges too);
                                     # upstream: seconds from sending to the last byte read (a
                                     # stream: the whole time it was open); default attempt.latency
rec.first_chunk()                    # stream(): the first event is about to be yielded
rec.ended(response_or_done_or_error, chunks=n)  # once, in a finally: the answer or the exception
tel.circuit_changed(circuit_key, "open")        # a breaker changed state
tel.metrics(); tel.exposition(); tel.health()   # Engine.metrics(), /metrics, Engine.health()
```

Engine overhead is the request's wall time less the upstream seconds of its tries and the waits.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from engine.errors import (
    AllTargetsFailed,
    DeadlineExceeded,
    NoRouteError,
    ProviderError,
    RequestError,
    StreamInterrupted,
)
from engine.graph import Route, RoutingGraph, TelemetryConfig
from engine.result import Attempt, Done, Response
from engine.telemetry.health import Health, HealthTracker
from engine.telemetry.logs import REQUEST_ID, AccessLog
from engine.telemetry.metrics import Metrics
from engine.telemetry.names import (
    WIRE_OUTCOMES,
    ModelLabels,
    error_type,
    provider_name,
    server_address,
)
from engine.telemetry.targets import ProviderInfo, TargetInfo, Targets

if TYPE_CHECKING:
    from engine.telemetry.metrics import CollectorRegistry, RouteSeries
    from engine.telemetry.traces import Begun, Tracing

__all__ = ["NULL", "ProviderInfo", "Recorder", "RequestRec", "Telemetry"]

_ANSWERED: Final = frozenset({"ok", "cached", "coalesced"})
_OUTCOMES: Final[tuple[tuple[type[BaseException], str, int | None], ...]] = (
    (NoRouteError, "no_route", 404),
    (DeadlineExceeded, "deadline", 504),
    (StreamInterrupted, "interrupted", 502),
    (ProviderError, "provider_error", None),
    (AllTargetsFailed, "failed", 502),
    (RequestError, "bad_request", 400),
)


class Recorder:
    """The no-op recorder (``NULL``): what a request gets when telemetry is off."""

    __slots__ = ()

    def try_ended(
        self, attempt: Attempt, upstream: float | None = None, *, circuit: str | None = None
    ) -> None:
        """One try ended (``circuit``: its circuit's state after it, for the span)."""

    def first_chunk(self) -> None:
        """A stream's first event is about to be yielded."""

    def waited(self, seconds: float, *, target: str | None = None) -> None:
        """A sleep: a retry's backoff, or with ``target`` a wait for rate-limit room."""

    def cache_lookup(self, hit: bool) -> None:
        """A cacheable request looked in the response cache."""

    def ended(self, result: Response | Done | BaseException | None, *, chunks: int = 0) -> None:
        """The request is over: its answer, or the exception it raised."""


NULL: Final = Recorder()


class Telemetry:
    """Metrics, spans, the access log and health windows of one engine."""

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
        model_limit: int = 64,
        clock: Callable[[], float] = time.perf_counter,
        windows: HealthTracker | None = None,
        multiprocess: bool | None = None,
    ) -> None:
        self.config = config if config is not None else TelemetryConfig()
        # multiprocess: prometheus_client's own metric objects (default: PROMETHEUS_MULTIPROC_DIR set)
        self._metrics = Metrics(registry, multiprocess=multiprocess) if self.config.metrics else None
        self.tracing = _tracing(self.config, tracer_provider)
        self.log = AccessLog(self.config.log_format, self.config.log_level)
        self.labels = ModelLabels(model_limit)
        # the engine passes its own tracker, which its try lifecycle feeds (telemetry on or off);
        # standalone, the recorders feed this one
        self.windows = windows if windows is not None else HealthTracker()
        self.feeds_health = windows is None
        self.providers: dict[str, ProviderInfo] = {}
        self.targets = Targets(self.labels, self._metrics)
        self.clock = clock
        self._ids = itertools.count(1)

    @classmethod
    def for_graph(cls, graph: RoutingGraph, **kwargs: Any) -> Telemetry:
        tel = cls(graph.telemetry, **kwargs)
        tel.use_graph(graph)
        return tel

    def use_graph(self, graph: RoutingGraph) -> None:
        """Read the providers and models of a (reloaded) graph; the switches stay as built."""
        names = graph.telemetry.provider_names
        self.providers = {
            p.name: ProviderInfo(provider_name(p, names), server_address(p), p.speed.read)
            for p in graph.providers.values()
        }
        self.labels.use_graph(graph)
        self.targets.use(self.providers)

    def request_started(
        self,
        route: Route | None,
        model: str,
        request: Mapping[str, Any] | None = None,
        *,
        stream: bool = False,
        request_id: str | None = None,
    ) -> Recorder:
        if self._metrics is None and self.tracing is None and not self.log.enabled():
            return NULL
        return RequestRec(self, route, model, request, stream, request_id)

    def circuit_changed(self, circuit: str, state: str) -> None:
        if self._metrics is not None:
            self._metrics.circuit(circuit, state)

    def metrics(self) -> dict[str, dict[str, float]]:
        """Every series as a plain dict: sample name -> ``"label=value,..."`` -> value."""
        return self._metrics.snapshot() if self._metrics is not None else {}

    def exposition(self) -> bytes:
        """The Prometheus text format (empty with metrics off)."""
        return self._metrics.exposition() if self._metrics is not None else b""

    @property
    def registry(self) -> CollectorRegistry | None:
        return self._metrics.registry if self._metrics is not None else None

    def health(self) -> dict[str, dict[str, Health]]:
        """``{"providers": {name: Health}, "targets": {key: Health}}`` over the recent windows."""
        out: dict[str, dict[str, Health]] = {"providers": {}, "targets": {}}
        for key in sorted(self.windows.windows):
            kind, _, name = key.partition(":")
            if kind not in ("p", "t"):
                continue  # a group member's observations (least_latency's)
            info = self.providers.get(name.partition("/")[0])
            read = info.read_timeout if info is not None else 30.0
            out["providers" if kind == "p" else "targets"][name] = self.windows.health(key, read)
        return out

    def next_id(self) -> str:
        return f"{os.getpid():x}-{next(self._ids):x}"


def _tracing(config: TelemetryConfig, provider: Any) -> Tracing | None:
    """Spans, only when asked for and OpenTelemetry is installed (never imported otherwise)."""
    if not config.traces:
        return None
    try:
        from engine.telemetry.traces import Tracing
    except ImportError:
        return None
    return Tracing(provider, capture_content=config.capture_content)


class RequestRec(Recorder):
    """One routed request's recorder. Everything per target (labels, bound metric children, span
    attributes) comes from ``Telemetry.targets``; spans are made when the request ends."""

    __slots__ = (
        "_answer",
        "_cache",
        "_first",
        "_route",
        "_tel",
        "_trace",
        "_tries",
        "model",
        "request_id",
        "retries",
        "route",
        "stream",
        "t0",
        "tries",
        "upstream",
        "waits",
    )

    def __init__(
        self,
        tel: Telemetry,
        route: Route | None,
        model: str,
        request: Mapping[str, Any] | None,
        stream: bool,
        request_id: str | None,
    ) -> None:
        self._tel = tel
        self.route = label = str(route.index) if route is not None else "none"
        self.model = model
        self.stream = stream
        self.request_id = request_id
        self.t0 = tel.clock()
        self.tries = self.retries = 0
        self.upstream = self.waits = 0.0
        self._first: float | None = None
        self._cache = "none"
        self._answer: tuple[Attempt, float, TargetInfo] | None = None  # the answering try, its end
        tracing = tel.tracing
        self._trace: Begun | None = None
        if tracing is not None:
            self._trace = tracing.begin(model, label, request, stream)
            self._tries: list[tuple[Attempt, TargetInfo, str | None, int]] = []
        self._route: RouteSeries | None = None
        if tel._metrics is not None:
            self._route = tel._metrics.route(label)
            self._route.in_flight.inc()

    def try_ended(
        self, attempt: Attempt, upstream: float | None = None, *, circuit: str | None = None
    ) -> None:
        tel, outcome = self._tel, attempt.outcome
        self.tries += 1
        if outcome == "retry":
            self.retries += 1
        self.upstream += attempt.latency if upstream is None else upstream
        info = tel.targets.get(attempt.target)
        if tel.feeds_health:
            self._health(attempt, info)
        if outcome == "ok":
            self._answer = (attempt, tel.clock(), info)
        if info.series is not None:
            info.series.try_ended(outcome, attempt.kind)
            if outcome != "ok" and outcome in WIRE_OUTCOMES:
                labels = info.genai(tel.labels, info.model or self.model, None)
                tel._metrics.failed_operation(  # type: ignore[union-attr]
                    (*labels, error_type(attempt) or ""), attempt.latency
                )
        if self._trace is not None:
            self._tries.append((attempt, info, circuit, time.time_ns()))

    def _health(self, attempt: Attempt, info: TargetInfo) -> None:
        windows, outcome = self._tel.windows, attempt.outcome
        if outcome == "skipped":
            windows.skipped(info.health_t)
            windows.skipped(info.health_p)
        elif outcome in WIRE_OUTCOMES and outcome != "cancelled":
            ok = outcome == "ok"
            windows.record(info.health_t, ok, attempt.latency)
            windows.record(info.health_p, ok, attempt.latency)

    def first_chunk(self) -> None:
        if self._first is None:
            self._first = self._tel.clock()

    def waited(self, seconds: float, *, target: str | None = None) -> None:
        self.waits += seconds
        if target is not None and self._tel._metrics is not None:
            self._tel._metrics.rate_limit_wait(self._tel.targets.get(target).label, seconds)

    def cache_lookup(self, hit: bool) -> None:
        self._cache = "hit" if hit else "miss"
        if self._tel._metrics is not None:
            self._tel._metrics.cache(self.route, hit)

    def ended(self, result: Response | Done | BaseException | None, *, chunks: int = 0) -> None:
        tel = self._tel
        now = tel.clock()
        answered = isinstance(result, Response | Done)
        outcome, status = _outcome(result)
        if answered and result.cached:  # type: ignore[union-attr]
            self._cache = "hit"
        if self._route is not None:
            took = now - self.t0
            mode = "stream" if self.stream else "route"
            self._route.ended(outcome, took, took - self.upstream - self.waits, mode)
            if answered:
                self._answered_metrics(result, now, chunks)  # type: ignore[arg-type]
        if self._trace is not None:
            self._spans(result)
        if tel.log.enabled():
            self._log(result, outcome, status, now)

    def _answered_metrics(self, result: Response | Done, now: float, chunks: int) -> None:
        tel = self._tel
        m = tel._metrics
        assert m is not None
        if result.cost:
            m.cost(result.provider, tel.labels.label(result.provider, result.model), result.cost)
        if self._answer is None:
            return  # answered from the cache or by a request in flight: no operation of its own
        attempt, ended_at, info = self._answer
        ops = info.operation(m, tel.labels, info.model or self.model, result.model)
        ops.answered(attempt.latency, result.usage.input_tokens, result.usage.output_tokens)
        if self.stream and self._first is not None:
            first = self._first - (ended_at - attempt.latency)
            per_chunk = (now - self._first) / (chunks - 1) if chunks > 1 else None
            ops.stream(max(first, 0.0), per_chunk)

    def _spans(self, result: Response | Done | BaseException | None) -> None:
        """The request's span and its tries' (``Tracing.emit``), with the engine's counts."""
        tel, begun = self._tel, self._trace
        assert tel.tracing is not None and begun is not None
        attrs = begun.attrs
        attrs["engine.tries"] = self.tries
        attrs["engine.retries"] = self.retries
        attrs["engine.cache"] = self._cache
        if self._first is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = self._first - self.t0
        error = None
        if isinstance(result, Response | Done):
            attrs.update(tel.targets.provider_attrs(result.provider))
            tel.tracing.answer_attributes(attrs, result)
        elif result is not None:
            attrs["error.type"] = error = type(result).__name__
        tel.tracing.emit(begun, self.model, self._tries, error)

    def _log(
        self, result: Response | Done | BaseException | None, outcome: str, status: int | None, now: float
    ) -> None:
        """The access line, its values in ``FIELDS`` order (no dict on the way)."""
        attempts = getattr(result, "attempts", ())
        target = None
        for a in reversed(attempts):
            if a.outcome in _ANSWERED:
                target = a.target
                break
        model = tokens_in = tokens_out = cost = None
        if isinstance(result, Response | Done):
            usage = result.usage
            model, cost = result.model, result.cost
            tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
            if status is None:
                status = 200
        elif status is None and attempts:
            status = attempts[-1].status
        first = self._first
        self._tel.log.row(
            (
                self.request_id or REQUEST_ID.get() or self._tel.next_id(),
                self.route,
                target,
                model,
                self.tries,
                outcome,
                status,
                round((now - self.t0) * 1000, 3),
                round((first - self.t0) * 1000, 3) if first else None,
                tokens_in,
                tokens_out,
                cost,
                self._cache,
            )
        )


def _outcome(result: Response | Done | BaseException | None) -> tuple[str, int | None]:
    """The request's outcome label and the status it answers with, where one is known."""
    if isinstance(result, Response | Done):
        return ("cached" if result.cached else "ok"), None
    if result is None:
        return "cancelled", None
    for cls, name, status in _OUTCOMES:
        if isinstance(result, cls):
            if isinstance(result, ProviderError):
                return name, result.status
            return name, status
    return (
        "cancelled" if isinstance(result, BaseException) and not isinstance(result, Exception) else "error"
    ), None
