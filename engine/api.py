"""The ``Engine`` facade: a routes.yaml (or a compiled graph) in, routed responses, streams, plans and
health out. It compiles (the compile half) and delegates the rest to the runtime's front door,
``engine.runtime.Supervisor``; ``SyncEngine`` (engine/sync.py) is its blocking twin.

```python
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

from engine.compiler import compile_file
from engine.graph import RoutingGraph
from engine.plan import Plan, PlanEstimate, build_plan
from engine.result import Response
from engine.runtime import (
    AttemptEnded,
    AttemptStarted,
    BreakerChanged,
    EngineOptions,
    EventName,
    EventStream,
    FailingOver,
    ModelListing,
    ProviderHealth,
    RegistryStats,
    RequestLike,
    Retrying,
    RouteMany,
    StateChanged,
    Supervisor,
)

if TYPE_CHECKING:
    from engine.sync import SyncEngine

__all__ = ["Engine", "Subscribable"]

Unsubscribe = Callable[[], None]


class Subscribable:
    """``on()``, typed per event name, for ``Engine`` and ``SyncEngine`` alike."""

    _core: Supervisor

    @overload
    def on(
        self, event: Literal["attempt_start"], callback: Callable[[AttemptStarted], object]
    ) -> Unsubscribe: ...
    @overload
    def on(
        self, event: Literal["attempt_end"], callback: Callable[[AttemptEnded], object]
    ) -> Unsubscribe: ...
    @overload
    def on(self, event: Literal["retry"], callback: Callable[[Retrying], object]) -> Unsubscribe: ...
    @overload
    def on(self, event: Literal["failover"], callback: Callable[[FailingOver], object]) -> Unsubscribe: ...
    @overload
    def on(self, event: Literal["breaker"], callback: Callable[[BreakerChanged], object]) -> Unsubscribe: ...
    @overload
    def on(self, event: Literal["state"], callback: Callable[[StateChanged], object]) -> Unsubscribe: ...

    def on(self, event: EventName, callback: Callable[[Any], object]) -> Unsubscribe:
        """Subscribe to ``attempt_start``, ``attempt_end``, ``retry``, ``failover``, ``breaker``
        or ``state`` (the shared backend went away or came back); returns the function that
        unsubscribes. Nothing is built for events nobody hears."""
        return self._core.hooks.on(event, callback)


class Engine(Subscribable):
    """Routes requests through a compiled routing graph (async; ``SyncEngine`` blocks).

    ``transport`` is ``"aiohttp"`` (default: an aiohttp session per provider, the fastest
    measured), ``"httpx-aiohttp"`` or a callable ``(provider) -> httpx.AsyncBaseTransport``
    (``"httpx"``, httpx's own pool, was removed: it raises ``ValueError`` saying why); ``seed``
    makes weighted, least-latency and jitter draws repeatable; ``circuit_factory`` is a
    ``purgatory.AsyncCircuitBreakerFactory`` (default: circuits kept where ``cache.backend``
    says, so with a Redis backend every engine on that Redis shares them); ``registry`` is the
    ``prometheus_client.CollectorRegistry`` the metrics go to (default: one of the engine's own,
    never the global one); ``tracer_provider`` an OpenTelemetry ``TracerProvider`` for the spans
    (default: the global one; only with ``telemetry.traces: true``).

    Shared state (``cache.backend``: memory, or a Redis URL for several instances): the response
    cache, single-flight of identical requests, the model registry, rate-limit counters and
    circuits. Nothing connects to Redis until the first request; a Redis that fails degrades to
    no shared state (a ``state`` event says so), never a failed request.
    """

    def __init__(
        self,
        graph: RoutingGraph,
        *,
        source: str | Path | None = None,
        profile: str | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        self._core = Supervisor(graph, **options)
        self._source = Path(source) if source is not None else None
        self._profile = profile
        self._sync_view: SyncEngine | None = None

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        profile: str | None = None,
        **options: Unpack[EngineOptions],
    ) -> Engine:
        """Compile ``path`` (with ``profiles/PROFILE.yaml`` beside it; default profile:
        ``$ENGINE_PROFILE``). Raises ``ConfigError``."""
        profile = profile if profile is not None else os.environ.get("ENGINE_PROFILE") or None
        return cls(
            compile_file(path, profile=profile),
            source=path,
            profile=profile,
            **options,
        )

    @classmethod
    def from_graph(cls, graph: RoutingGraph, **options: Unpack[EngineOptions]) -> Engine:
        return cls(graph, **options)

    @property
    def graph(self) -> RoutingGraph:
        """The graph new requests start on."""
        return self._core.graph

    @property
    def sync(self) -> SyncEngine:
        """This engine's blocking twin (same graph, connections and circuits; runs on the
        engine's own loop thread)."""
        if self._sync_view is None:
            from engine.sync import SyncEngine

            self._sync_view = SyncEngine.of(self)
        return self._sync_view

    # -- requests -------------------------------------------------------------------------------

    async def route(self, request: RequestLike) -> Response:
        """Route one request; raises ``RequestError`` (a malformed request, before anything is
        sent), ``NoRouteError``, ``AllTargetsFailed``, ``DeadlineExceeded`` or ``ProviderError``
        (each listing its attempts)."""
        return await self._core.route(request)

    def route_many(
        self, requests: Iterable[RequestLike] | AsyncIterable[RequestLike], *, concurrency: int = 8
    ) -> RouteMany:
        """Route many requests, at most ``concurrency`` in flight: ``async for index, outcome in
        eng.route_many(reqs, concurrency=16)`` yields each as it finishes, ``outcome`` its
        ``Response`` or the ``RouteError`` (``RequestError`` for a malformed one) it ended with.
        Each has its route's deadline, rate limits and circuits, as ``route()``; one failure
        never stops the others. ``requests`` (sync or async) is read only as room frees up.
        ``aclose()`` (or ``async with``, or cancelling the reader) cancels what is in flight."""
        return self._core.route_many(requests, concurrency)

    async def count_tokens(self, request: RequestLike) -> int:
        """The request's input tokens: the count of the provider the route would call first
        (its first target whose circuit is not open) where its kind has one (Anthropic's
        ``/v1/messages/count_tokens``), else the engine's estimate (text characters / 4, the
        tool definitions' JSON among them).
        Raises ``RequestError``, ``NoRouteError``, or ``ProviderError`` when the provider
        refuses the request; a provider that cannot answer leaves the estimate."""
        return await self._core.count_tokens(request)

    def stream(self, request: RequestLike) -> EventStream:
        """Stream one request: ``async for event in engine.stream(req)`` yields ``TextDelta`` /
        ``ToolCallDelta`` / ``ReasoningDelta`` events, then one ``Done``. Raises
        ``RequestError`` and ``NoRouteError`` at once."""
        return self._core.stream(request)

    def plan(self, request: RequestLike) -> Plan:
        """The dry run: what ``route`` would do now (open circuits, and the recent p95 latency a
        route's ``max_latency`` reads, included), with no network."""
        p95 = {t: h.p95 for ph in self.health().values() for t, h in ph.targets.items() if h.p95 is not None}
        return build_plan(
            self.graph, request, open_circuits=self._core.circuits.open_circuits(), latencies=p95
        )

    def estimate(self, request: RequestLike) -> dict[str, PlanEstimate]:
        """Per target the request's route can reach (``provider/model``, as the plan names it):
        its estimated input tokens, its ``max_tokens`` (256 when it sets none) and the cost in
        USD at the target's price (``None`` without one). No network."""
        return {t.target: t.estimate for t in build_plan(self.graph, request).targets}

    def route_sync(self, request: RequestLike) -> Response:
        """``engine.sync.route(request)``: for scripts, on the engine's own loop thread."""
        return self._core.run_sync("route_sync()", "await route()", functools.partial(self.route, request))

    # -- graphs ---------------------------------------------------------------------------------

    def reload(
        self, path: str | Path | None = None, profile: str | None = None, *, graph: RoutingGraph | None = None
    ) -> RoutingGraph:
        """Compile ``path`` (default: the file this engine was built from, with its profile) or
        take ``graph``, and swap it in atomically. Requests in flight finish on the graph they
        started with; connections of unchanged providers are kept. On ``ConfigError`` the
        current graph stays. New cache TTLs apply at once; a changed ``cache.backend`` starts a
        new shared state (cache, limits, registry and circuits start empty there). Compiles on
        the calling thread: inside async code, ``await areload()``."""
        return self._core.swap(graph if graph is not None else self._compile(path, profile))

    async def areload(
        self, path: str | Path | None = None, profile: str | None = None, *, graph: RoutingGraph | None = None
    ) -> RoutingGraph:
        """``reload`` for async code: the compile runs in a worker thread, so the event loop
        keeps answering requests meanwhile; the swap then happens on the loop."""
        if graph is None:
            graph = await asyncio.to_thread(self._compile, path, profile)
        return self._core.swap(graph)

    def _compile(self, path: str | Path | None, profile: str | None) -> RoutingGraph:
        source = Path(path) if path is not None else self._source
        if source is None:
            raise ValueError("this engine was built from a graph: pass path= or graph=")
        use_profile = profile if profile is not None else self._profile
        graph = compile_file(source, profile=use_profile)
        self._source, self._profile = source, use_profile
        return graph

    # -- health and listings --------------------------------------------------------------------

    async def warmup(self) -> dict[str, str]:
        """Open a connection to every provider in parallel (a GET of its model listing); returns
        per provider the status, or the error kind when it could not be reached. Each GET is
        bounded as a whole by its provider's pool + connect + read timeouts (what one try of a
        request gets): past it, ``"timeout: ..."``, however slowly the answer trickles in."""
        return await self._core.warmup()

    def health(self) -> dict[str, ProviderHealth]:
        """Per provider (and, in ``.targets``, per target): score 0–1, circuit state, latency
        p50/p95 over the recent window and its moving average, counts of ok, failed and skipped
        tries. Kept whether telemetry is on or off."""
        return self._core.health()

    def metrics(self) -> dict[str, dict[str, float]]:
        """Every metric as a plain dict: sample name -> ``"label=value,..."`` -> value (empty
        with ``telemetry.metrics: false``); cost totals under ``engine_cost_usd_total``."""
        return self._core.telemetry.metrics()

    def exposition(self) -> bytes:
        """The Prometheus text format of this engine's registry (what ``/metrics`` serves)."""
        return self._core.telemetry.exposition()

    async def list_models(self, provider: str, *, refresh: bool = False) -> ModelListing:
        """``provider``'s models: its listing endpoint (each kind's own) merged with the models
        routes.yaml declares, cached for ``cache.models.ttl`` (``refresh`` skips the cache).
        Raises ``ListingError`` (a ``ProviderError``: its ``attempts`` hold the GET's ``kind``
        and ``detail``) when the listing cannot be fetched or read, or does not arrive whole
        within the provider's pool + connect + read timeouts (kind ``timeout``),
        ``ValueError`` for a provider the config does not name."""
        return await self._core.list_models(provider, refresh)

    async def list_models_many(
        self,
        providers: Iterable[str] | None = None,
        *,
        max_concurrency: int = 10,
        timeout: float | None = None,
    ) -> dict[str, ModelListing | Exception]:
        """RouteMany listings at once (default: every provider), at most ``max_concurrency`` fetches
        at a time, each bounded by ``timeout`` seconds. A provider that fails maps to its error
        (``ListingError``, or ``TimeoutError`` past ``timeout``) and does not stop the
        others."""
        return await self._core.list_models_many(providers, max_concurrency, timeout)

    async def invalidate_models(self, provider: str | None = None) -> None:
        """Forget ``provider``'s cached listing (``None``: every listing), here and, with Redis,
        for every instance."""
        await self._core.invalidate_models(provider)

    def model_stats(self) -> RegistryStats:
        """Model registry counters of this engine: hits, misses, listings cached, errors."""
        return self._core.model_stats()

    # -- closing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection (also those of the sync loop); routing afterwards raises
        ``RuntimeError``. A request still in flight ends with ``AllTargetsFailed`` ("the engine
        was closed") at its next try: no connection is opened again."""
        await self._core.aclose()

    def close(self) -> None:
        """``aclose`` for synchronous code (``engine.sync.close``)."""
        self._core.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Engine({self.graph!r})"
