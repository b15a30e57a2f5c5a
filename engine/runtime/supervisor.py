"""The runtime's front door: a compiled graph in, routed responses, streams, health and listings
out, and the whole lifecycle behind them: the runtime new requests start on, graph swaps (a retired
graph's connections and state released once its last request ends), closing per event loop (with
the tries still unwinding), the sync loop thread, and the bridge from circuits and shared state to
the engine's events."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import difflib
import functools
import logging
import random
import threading
import weakref
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

from engine.errors import ListingError
from engine.graph import CacheConfig, Provider, RoutingGraph
from engine.providers.base import WireError
from engine.request import Request, normalize_request
from engine.result import Response
from engine.runtime.backends import Fault, TransportOption, resolve_backend
from engine.runtime.breakers import Circuits
from engine.runtime.context import Shared, perf
from engine.runtime.counting import count_tokens
from engine.runtime.events import BreakerChanged, Hooks, StateChanged
from engine.runtime.executor import Runtime
from engine.runtime.health import ProviderHealth, provider_health
from engine.runtime.loop import LoopThread, SyncStream, outside_loop
from engine.runtime.many import RouteMany, SyncRouteMany
from engine.runtime.state import ModelListing, RegistryStats, State, StateWarning
from engine.runtime.streaming import EventStream
from engine.runtime.transport import Closed, Connection, ConnectionPool
from engine.telemetry import Telemetry
from engine.telemetry.health import HealthTracker

if TYPE_CHECKING:
    from engine.telemetry.metrics import CollectorRegistry

__all__ = ["EngineOptions", "RequestLike", "Supervisor"]

RequestLike = Request | dict[str, Any]
T = TypeVar("T")
_log = logging.getLogger("engine.state")


class EngineOptions(TypedDict, total=False):
    """The keyword options of ``Engine``, ``SyncEngine`` and their ``from_file``/``from_graph``:
    ``transport``, ``seed``, ``circuit_factory``, ``registry`` (a prometheus_client
    ``CollectorRegistry``), ``tracer_provider`` (an OpenTelemetry ``TracerProvider``)."""

    transport: TransportOption
    seed: int | None
    circuit_factory: Any
    registry: CollectorRegistry | None
    tracer_provider: Any


class Supervisor:
    """What the ``Engine`` facade talks to: one per engine, outliving the graphs it runs."""

    def __init__(
        self,
        graph: RoutingGraph,
        **options: Unpack[EngineOptions],
    ) -> None:
        unknown = options.keys() - EngineOptions.__optional_keys__
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(sorted(unknown))}")
        self.hooks = Hooks()
        self._circuit_factory = options.get("circuit_factory")
        # one per engine, surviving reloads; the lifecycle feeds its health windows itself
        self.telemetry = Telemetry.for_graph(
            graph,
            registry=options.get("registry"),
            tracer_provider=options.get("tracer_provider"),
            windows=HealthTracker(),
        )
        state = self._new_state(graph.cache)
        self.circuits = self._new_circuits(state)
        pool = ConnectionPool(*resolve_backend(options.get("transport")))
        self.shared = Shared(
            pool, self.circuits, self.hooks, random.Random(options.get("seed")), state, self.telemetry
        )
        self._state_refs: dict[State, int] = {}  # live runtimes per state (a swap may switch)
        self._unclosed_states: list[State] = []
        self.runtime = self._runtime(graph)  # the one new requests start on
        self._unclosed: list[Connection] = []  # released by a swap with no loop to close them
        self._closing: set[asyncio.Task[None]] = set()
        self._sync: LoopThread | None = None
        self._at_exit: Callable[[], None] | None = None  # closes at exit once the sync API ran
        self._lock = threading.Lock()
        self.closed = False

    @property
    def graph(self) -> RoutingGraph:
        return self.runtime.graph

    def _new_state(self, cache: CacheConfig) -> State:
        return State.create(cache, fetch=self._fetch_json, on_warning=self._state_warning)

    def _new_circuits(self, state: State) -> Circuits:
        factory = self._circuit_factory
        return Circuits(
            factory if factory is not None else state.breaker_factory(), on_change=self._breaker_changed
        )

    def _runtime(self, graph: RoutingGraph) -> Runtime:
        rt = Runtime(graph, self.shared)
        self._state_refs[rt.state] = self._state_refs.get(rt.state, 0) + 1
        return rt

    def ensure_open(self) -> None:
        if self.closed:
            raise RuntimeError("this engine is closed")

    # -- requests -------------------------------------------------------------------------------

    async def route(self, request: RequestLike) -> Response:
        self.ensure_open()
        req = normalize_request(request)
        rt = self.runtime
        rt.inflight += 1
        try:
            return await rt.route(req)
        finally:
            rt.inflight -= 1
            if rt.retired and not rt.inflight:
                self._release(rt)

    def route_many(
        self, requests: Iterable[RequestLike] | AsyncIterable[RequestLike], concurrency: int
    ) -> RouteMany:
        self.ensure_open()
        return RouteMany(self.route, requests, concurrency)

    def route_many_sync(self, requests: Iterable[RequestLike], concurrency: int) -> SyncRouteMany:
        """``route_many`` for blocking code: read on the sync loop's thread."""
        outside_loop("route_many()", "engine.route_many() with async for")
        return SyncRouteMany(self.route_many(requests, concurrency), self._thread())

    async def count_tokens(self, request: RequestLike) -> int:
        self.ensure_open()
        req = normalize_request(request)
        rt = self.runtime
        model, route = rt.match(req)
        rt.inflight += 1
        try:
            return await count_tokens(rt, req, model, route)
        finally:
            rt.inflight -= 1
            if rt.retired and not rt.inflight:
                self._release(rt)

    def stream(self, request: RequestLike) -> EventStream:
        self.ensure_open()
        req = normalize_request(request)
        rt = self.runtime
        model, route = rt.match(req, stream=True)
        rt.inflight += 1

        def closed() -> None:
            rt.inflight -= 1
            if rt.retired and not rt.inflight:
                self._release(rt)

        return EventStream(rt, req, model, route, on_close=closed)

    def stream_sync(self, request: RequestLike) -> SyncStream:
        """``stream`` for blocking code: opened, read and closed on the sync loop's thread."""
        outside_loop("stream()", "engine.stream() with async for")
        thread = self._thread()
        return SyncStream(thread.call(functools.partial(self.stream, request)), thread)

    def run_sync(self, call: str, instead: str, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``coro()`` run to its end on the sync loop's thread (``call`` is refused inside a
        running event loop: use ``instead``)."""
        outside_loop(call, instead)
        return self._thread().run(coro())

    def _thread(self) -> LoopThread:
        with self._lock:
            if self._sync is None:
                self._sync = LoopThread()
                # a script's one-liner (Engine.from_file(...).route_sync(...)) never closes the
                # engine: close its connections at interpreter exit instead of leaking them
                self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
                atexit.register(self._at_exit)
            return self._sync

    # -- graphs ---------------------------------------------------------------------------------

    def swap(self, graph: RoutingGraph) -> RoutingGraph:
        """Make ``graph`` the one new requests start on; retire the current one (released once
        its requests in flight are done)."""
        if not self.shared.state.configure(graph.cache):
            # another backend: new requests use a new state (and, unless the caller gave a
            # circuit factory, circuits kept there); requests in flight finish on the old one
            state = self._new_state(graph.cache)
            if self._circuit_factory is None:
                self.circuits = self._new_circuits(state)
            self.shared = self.shared.with_state(state, self.circuits)
        new = self._runtime(graph)
        self.telemetry.use_graph(graph)
        with self._lock:
            old, self.runtime = self.runtime, new
        old.retired = True
        if not old.inflight:
            self._release(old)
        return graph

    def _release(self, rt: Runtime) -> None:
        """Drop a retired runtime's connections (and state); close those no live graph uses."""
        pool = self.shared.pool
        unused: list[Connection | State] = [c for c in rt.connections if pool.release(c)]
        rt.connections = []
        refs = self._state_refs
        if rt.state in refs:
            refs[rt.state] -= 1
            if not refs[rt.state] and rt.state is not self.shared.state:
                del refs[rt.state]
                unused.append(rt.state)
        if not unused:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._unclosed += [c for c in unused if isinstance(c, Connection)]
            self._unclosed_states += [c for c in unused if isinstance(c, State)]
            return
        for item in unused:
            task = asyncio.ensure_future(item.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- health ---------------------------------------------------------------------------------

    async def warmup(self) -> dict[str, str]:
        async def one(conn: Connection) -> str:
            try:
                return str(await conn.warm())
            except Fault as fault:
                return f"{fault.kind}: {fault.detail}"
            except Closed:
                return "closed: the engine was closed"

        conns = list(self.runtime.connections)
        results = await asyncio.gather(*(one(c) for c in conns))
        return {c.name: r for c, r in zip(conns, results, strict=True)}

    def health(self) -> dict[str, ProviderHealth]:
        states = self.circuits.states()
        tracker = self.shared.health
        return {
            name: provider_health(provider, tracker, states)
            for name, provider in sorted(self.graph.providers.items())
        }

    # -- model listings -------------------------------------------------------------------------

    async def list_models(self, provider: str, refresh: bool) -> ModelListing:
        p = self.provider(provider)
        try:
            return await self.shared.state.registry.list_models(p, refresh=refresh)
        except WireError as exc:
            raise self._unreadable(p, exc) from None

    async def list_models_many(
        self, providers: Iterable[str] | None, max_concurrency: int, timeout: float | None
    ) -> dict[str, ModelListing | Exception]:
        names = list(self.graph.providers) if providers is None else list(providers)
        ps = [self.provider(n) for n in names]
        out = await self.shared.state.registry.list_models_many(
            ps, max_concurrency=max_concurrency, timeout=timeout
        )
        by_name = {p.name: p for p in ps}
        return {n: self._unreadable(by_name[n], r) if isinstance(r, WireError) else r for n, r in out.items()}

    async def invalidate_models(self, provider: str | None) -> None:
        registry = self.shared.state.registry
        if provider is None:
            await registry.clear()
        else:
            await registry.invalidate(self.provider(provider))

    def model_stats(self) -> RegistryStats:
        return self.shared.state.registry.stats()

    def provider(self, name: str) -> Provider:
        """The current graph's provider ``name``; ``ValueError`` (with a hint) if none."""
        self.ensure_open()
        providers = self.graph.providers
        try:
            return providers[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(providers), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown provider {name!r}{hint}") from None

    def _unreadable(self, provider: Provider, exc: WireError) -> ListingError:
        """A listing the kind could not parse, its text masked of the provider's secrets."""
        conn = self.runtime.by_provider.get(provider.name)
        detail = conn.scrub(str(exc)) if conn is not None else "unreadable listing"
        return ListingError.of(
            provider.name, f"{provider.name}: model listing could not be read: {detail}", "protocol", detail
        )

    async def _fetch_json(self, provider: Provider, url: str) -> Any:
        """The registry's fetch: a GET with the provider's own connection and auth."""
        conn = self.runtime.by_provider.get(provider.name)
        if conn is None:  # a provider a swap removed while its listing was asked for
            raise ValueError(f"unknown provider {provider.name!r}")
        return await conn.get_json(url)

    # -- events from the state and the circuits -------------------------------------------------

    def _state_warning(self, warning: StateWarning) -> None:
        _log.warning("%s", warning)
        if self.hooks.state:
            self.hooks.fire(self.hooks.state, StateChanged(warning, perf()))

    def _breaker_changed(self, circuit: str, state: str) -> None:
        self.telemetry.circuit_changed(circuit, state)
        if self.hooks.breaker:
            self.hooks.fire(self.hooks.breaker, BreakerChanged(circuit, state, perf()))

    # -- closing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection (of every loop), the states and, from another thread, the sync
        loop; the tries still unwinding on this loop are waited for."""
        self.closed = True
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
            self._at_exit = None
        self.shared.pool.close_now()
        loop = asyncio.get_running_loop()
        stragglers = [t for t in self.shared.stragglers if t.get_loop() is loop]
        if stragglers:
            await asyncio.wait(stragglers)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        unclosed, self._unclosed = self._unclosed, []
        await asyncio.gather(*(c.aclose() for c in unclosed), return_exceptions=True)
        await self.shared.pool.aclose()
        states = {*self._unclosed_states, *self._state_refs, self.shared.state}
        self._unclosed_states, self._state_refs = [], {}
        await asyncio.gather(*(st.aclose() for st in states), return_exceptions=True)
        sync = self._sync
        if sync is not None and not sync.is_current():
            self._sync = None
            await asyncio.to_thread(sync.stop)

    def close(self) -> None:
        """``aclose`` for blocking code: on the sync loop (then stopped) when it runs."""
        outside_loop("close()", "await aclose()")
        sync = self._sync
        if sync is None:
            asyncio.run(self.aclose())
            return
        sync.run(self.aclose())  # closes the connections of every loop, then the loop itself
        self._sync = None
        sync.stop()


def _close_at_exit(ref: weakref.ReferenceType[Supervisor]) -> None:
    sup = ref()
    if sup is not None and not sup.closed:
        with contextlib.suppress(Exception):  # exiting: nothing is left to tell
            sup.close()
