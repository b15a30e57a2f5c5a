"""The ``Engine`` facade: a routes.yaml (or a compiled graph) in, routed responses, streams, plans and
health out; the one hub that knows every stage, from compiler to runtime.

```python
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import difflib
import functools
import logging
import os
import random
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from engine.compiler import compile_file
from engine.errors import ListingError
from engine.graph import CacheConfig, Provider, RoutingGraph
from engine.plan import Plan, build_plan
from engine.providers.base import WireError
from engine.request import Request, normalize_request
from engine.result import Response
from engine.runtime.backends import Fault, TransportOption, resolve_backend
from engine.runtime.breakers import CLOSED, HALF_OPEN, OPEN, Circuits
from engine.runtime.context import Shared, perf
from engine.runtime.events import BreakerChanged, Hooks, StateChanged
from engine.runtime.executor import Runtime
from engine.runtime.health import ProviderHealth
from engine.runtime.state import ModelListing, RegistryStats, State, StateWarning
from engine.runtime.streaming import EventStream
from engine.runtime.transport import Closed, Connection, ConnectionPool

__all__ = ["Engine"]

RequestLike = Request | dict[str, Any]
T = TypeVar("T")
_SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
_log = logging.getLogger("engine.state")


class Engine:
    """Routes requests through a compiled routing graph.

    Options: ``transport`` is ``"aiohttp"`` (default: an aiohttp session per provider, the
    fastest measured), ``"httpx-aiohttp"`` or a callable ``(provider) ->
    httpx.AsyncBaseTransport`` (``"httpx"``, httpx's own pool, was removed: it raises
    ``ValueError`` saying why); ``seed`` makes weighted, least-latency and
    jitter draws repeatable; ``circuit_factory`` is a ``purgatory.AsyncCircuitBreakerFactory``
    (default: circuits kept where ``cache.backend`` says, so with a Redis backend every engine on
    that Redis shares them).

    Shared state (``cache.backend``: memory, or a Redis URL for several instances): the response
    cache, single-flight of identical requests, the model registry, rate-limit counters and
    circuits. Nothing connects to Redis until the first request; a Redis that fails degrades to
    no shared state (a ``state`` event says so), never a failed request.
    """

    def __init__(self, graph: RoutingGraph, *, transport: TransportOption = None,
                 seed: int | None = None, circuit_factory: Any = None,
                 source: str | Path | None = None, profile: str | None = None) -> None:
        self._hooks = Hooks()
        self._circuit_factory = circuit_factory
        state = self._new_state(graph.cache)
        circuits = self._new_circuits(state)
        self._circuits = circuits
        self._shared = Shared(ConnectionPool(*resolve_backend(transport)), circuits, self._hooks,
                              random.Random(seed), state)
        self._state_refs: dict[State, int] = {}  # live runtimes per state (a reload may switch)
        self._unclosed_states: list[State] = []
        self._rt = self._runtime(graph)
        self._source = Path(source) if source is not None else None
        self._profile = profile
        self._unclosed: list[Connection] = []  # released by a reload with no loop to close them
        self._closing: set[asyncio.Task[None]] = set()
        self._sync: _LoopThread | None = None
        self._at_exit: Callable[[], None] | None = None  # closes at exit once route_sync ran
        self._lock = threading.Lock()
        self._closed = False

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path, profile: str | None = None, **options: Any) -> Engine:
        """Compile ``path`` (with ``profiles/PROFILE.yaml`` beside it; default profile:
        ``$ENGINE_PROFILE``). Raises ``ConfigError``."""
        profile = profile if profile is not None else os.environ.get("ENGINE_PROFILE") or None
        graph = compile_file(path, profile=profile)
        return cls(graph, source=path, profile=profile, **options)

    @classmethod
    def from_graph(cls, graph: RoutingGraph, **options: Any) -> Engine:
        return cls(graph, **options)

    @property
    def graph(self) -> RoutingGraph:
        """The graph new requests start on."""
        return self._rt.graph

    def _new_state(self, cache: CacheConfig) -> State:
        return State.create(cache, fetch=self._fetch_json, on_warning=self._state_warning)

    def _new_circuits(self, state: State) -> Circuits:
        factory = self._circuit_factory
        return Circuits(factory if factory is not None else state.breaker_factory(),
                        on_change=self._breaker_changed)

    def _runtime(self, graph: RoutingGraph) -> Runtime:
        rt = Runtime(graph, self._shared)
        self._state_refs[rt.state] = self._state_refs.get(rt.state, 0) + 1
        return rt

    # -- requests -------------------------------------------------------------------------------

    async def route(self, request: RequestLike) -> Response:
        """Route one request; raises ``RequestError`` (a malformed request, before anything is
        sent), ``NoRouteError``, ``AllTargetsFailed``, ``DeadlineExceeded`` or ``ProviderError``
        (each listing its attempts)."""
        if self._closed:
            raise RuntimeError("this engine is closed")
        req = normalize_request(request)
        rt = self._rt
        rt.inflight += 1
        try:
            return await rt.route(req)
        finally:
            rt.inflight -= 1
            if rt.retired and not rt.inflight:
                self._release(rt)

    def stream(self, request: RequestLike) -> EventStream:
        """Stream one request: ``async for event in engine.stream(req)`` yields ``TextDelta`` /
        ``ToolCallDelta`` events, then one ``Done``. Raises ``RequestError`` and ``NoRouteError``
        at once."""
        if self._closed:
            raise RuntimeError("this engine is closed")
        req = normalize_request(request)
        rt = self._rt
        model, route = rt.match(req)
        rt.inflight += 1

        def closed() -> None:
            rt.inflight -= 1
            if rt.retired and not rt.inflight:
                self._release(rt)

        return EventStream(rt, req, model, route, on_close=closed)

    def plan(self, request: RequestLike) -> Plan:
        """The dry run: what ``route`` would do now (open circuits included), with no network."""
        return build_plan(self._rt.graph, request, open_circuits=self._circuits.open_circuits())

    def route_sync(self, request: RequestLike) -> Response:
        """``route`` for scripts: runs on the engine's own event loop thread. Not for use inside a
        running event loop (``await engine.route()`` there)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("route_sync() inside a running event loop; use await route()")
        return self._run_sync(self.route(request))

    # -- lifecycle ------------------------------------------------------------------------------

    def reload(self, path: str | Path | None = None, profile: str | None = None, *,
               graph: RoutingGraph | None = None) -> RoutingGraph:
        """Compile ``path`` (default: the file this engine was built from, with its profile) or
        take ``graph``, and swap it in atomically. Requests in flight finish on the graph they
        started with; connections of unchanged providers are kept. On ``ConfigError`` the
        current graph stays. New cache TTLs apply at once; a changed ``cache.backend`` starts a
        new shared state (cache, limits, registry and circuits start empty there). Compiles on
        the calling thread: inside async code, ``await areload()``."""
        if graph is None:
            source, use_profile = self._reload_source(path, profile)
            graph = compile_file(source, profile=use_profile)
            self._source, self._profile = source, use_profile
        return self._swap(graph)

    async def areload(self, path: str | Path | None = None, profile: str | None = None, *,
                      graph: RoutingGraph | None = None) -> RoutingGraph:
        """``reload`` for async code: the compile runs in a worker thread, so the event loop
        keeps answering requests meanwhile; the swap then happens on the loop."""
        if graph is None:
            source, use_profile = self._reload_source(path, profile)
            graph = await asyncio.to_thread(compile_file, source, profile=use_profile)
            self._source, self._profile = source, use_profile
        return self._swap(graph)

    def _reload_source(self, path: str | Path | None,
                       profile: str | None) -> tuple[Path, str | None]:
        source = Path(path) if path is not None else self._source
        if source is None:
            raise ValueError("this engine was built from a graph: pass path= or graph=")
        return source, profile if profile is not None else self._profile

    def _swap(self, graph: RoutingGraph) -> RoutingGraph:
        """Make ``graph`` the one new requests start on; retire the current one."""
        if not self._shared.state.configure(graph.cache):
            # another backend: new requests use a new state (and, unless the caller gave a
            # circuit factory, circuits kept there); requests in flight finish on the old one
            state = self._new_state(graph.cache)
            if self._circuit_factory is None:
                self._circuits = self._new_circuits(state)
            self._shared = self._shared.with_state(state, self._circuits)
        new = self._runtime(graph)
        with self._lock:
            old, self._rt = self._rt, new
        old.retired = True
        if not old.inflight:
            self._release(old)
        return graph

    def _release(self, rt: Runtime) -> None:
        """Drop a retired runtime's connections (and state); close those no live graph uses."""
        pool = self._shared.pool
        unused: list[Connection | State] = [c for c in rt.connections if pool.release(c)]
        rt.connections = []
        refs = self._state_refs
        if rt.state in refs:
            refs[rt.state] -= 1
            if not refs[rt.state] and rt.state is not self._shared.state:
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

    async def warmup(self) -> dict[str, str]:
        """Open a connection to every provider in parallel (a GET of its model listing); returns
        per provider the status, or the error kind when it could not be reached. Each GET is
        bounded as a whole by its provider's pool + connect + read timeouts (what one try of a
        request gets): past it, ``"timeout: ..."``, however slowly the answer trickles in."""
        async def one(conn: Connection) -> str:
            try:
                return str(await conn.warm())
            except Fault as fault:
                return f"{fault.kind}: {fault.detail}"
            except Closed:
                return "closed: the engine was closed"

        conns = list(self._rt.connections)
        results = await asyncio.gather(*(one(c) for c in conns))
        return {c.name: r for c, r in zip(conns, results, strict=True)}

    def health(self) -> dict[str, ProviderHealth]:
        """Per provider: circuit state, moving-average latency of answered tries, counts."""
        states = self._circuits.states()
        tally = self._shared.tally
        out: dict[str, ProviderHealth] = {}
        for name, provider in sorted(self._rt.graph.providers.items()):
            mine = {k: v for k, v in states.items() if k == name or k.startswith(name + "/")}
            if provider.breaker is None:
                circuit = "none"
            else:
                circuit = max(mine.values(), key=_SEVERITY.__getitem__, default=CLOSED)
            out[name] = ProviderHealth(name, circuit, tally.latency.get(name),
                                       tally.tries.get(name, 0), tally.failures.get(name, 0),
                                       mine)
        return out

    def on(self, event: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Subscribe to ``attempt_start``, ``attempt_end``, ``retry``, ``failover``, ``breaker``
        or ``state`` (the shared backend went away or came back); returns the function that
        unsubscribes. Nothing is built for events nobody hears."""
        return self._hooks.on(event, callback)

    # -- shared state ---------------------------------------------------------------------------

    async def list_models(self, provider: str, *, refresh: bool = False) -> ModelListing:
        """``provider``'s models: its listing endpoint (each kind's own) merged with the models
        routes.yaml declares, cached for ``cache.models.ttl`` (``refresh`` skips the cache).
        Raises ``ListingError`` (a ``ProviderError``: its ``attempts`` hold the GET's ``kind``
        and ``detail``) when the listing cannot be fetched or read, or does not arrive whole
        within the provider's pool + connect + read timeouts (kind ``timeout``),
        ``ValueError`` for a provider the config does not name."""
        p = self._provider(provider)
        try:
            return await self._shared.state.registry.list_models(p, refresh=refresh)
        except WireError as exc:
            raise self._unreadable(p, exc) from None

    async def list_models_many(self, providers: Iterable[str] | None = None, *,
                               max_concurrency: int = 10, timeout: float | None = None
                               ) -> dict[str, ModelListing | Exception]:
        """Many listings at once (default: every provider), at most ``max_concurrency`` fetches
        at a time, each bounded by ``timeout`` seconds. A provider that fails maps to its error
        (``ListingError``, or ``TimeoutError`` past ``timeout``) and does not stop the
        others."""
        names = list(self.graph.providers) if providers is None else list(providers)
        ps = [self._provider(n) for n in names]
        out = await self._shared.state.registry.list_models_many(
            ps, max_concurrency=max_concurrency, timeout=timeout)
        by_name = {p.name: p for p in ps}
        return {n: self._unreadable(by_name[n], r) if isinstance(r, WireError) else r
                for n, r in out.items()}

    async def invalidate_models(self, provider: str | None = None) -> None:
        """Forget ``provider``'s cached listing (``None``: every listing), here and, with Redis,
        for every instance."""
        registry = self._shared.state.registry
        if provider is None:
            await registry.clear()
        else:
            await registry.invalidate(self._provider(provider))

    def model_stats(self) -> RegistryStats:
        """Model registry counters of this engine: hits, misses, listings cached, errors."""
        return self._shared.state.registry.stats()

    def _provider(self, name: str) -> Provider:
        if self._closed:
            raise RuntimeError("this engine is closed")
        providers = self.graph.providers
        try:
            return providers[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(providers), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown provider {name!r}{hint}") from None

    def _unreadable(self, provider: Provider, exc: WireError) -> ListingError:
        """A listing the kind could not parse, its text masked of the provider's secrets."""
        conn = self._rt.by_provider.get(provider.name)
        detail = conn.scrub(str(exc)) if conn is not None else "unreadable listing"
        return ListingError.of(provider.name,
                               f"{provider.name}: model listing could not be read: {detail}",
                               "protocol", detail)

    async def _fetch_json(self, provider: Provider, url: str) -> Any:
        """The registry's fetch: a GET with the provider's own connection and auth."""
        conn = self._rt.by_provider.get(provider.name)
        if conn is None:  # a provider a reload removed while its listing was asked for
            raise ValueError(f"unknown provider {provider.name!r}")
        return await conn.get_json(url)

    def _state_warning(self, warning: StateWarning) -> None:
        _log.warning("%s", warning)
        if self._hooks.state:
            self._hooks.fire(self._hooks.state, StateChanged(warning, perf()))

    def _breaker_changed(self, circuit: str, state: str) -> None:
        if self._hooks.breaker:
            self._hooks.fire(self._hooks.breaker, BreakerChanged(circuit, state, perf()))

    async def aclose(self) -> None:
        """Close every connection (also those of the ``route_sync`` loop); routing afterwards
        raises ``RuntimeError``. A request still in flight ends with ``AllTargetsFailed``
        ("the engine was closed") at its next try: no connection is opened again."""
        self._closed = True
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
            self._at_exit = None
        self._shared.pool.close_now()
        stragglers = [t for t in self._shared.stragglers if t.get_loop() is asyncio.get_running_loop()]
        if stragglers:
            await asyncio.wait(stragglers)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        unclosed, self._unclosed = self._unclosed, []
        await asyncio.gather(*(c.aclose() for c in unclosed), return_exceptions=True)
        await self._shared.pool.aclose()
        states = {*self._unclosed_states, *self._state_refs, self._shared.state}
        self._unclosed_states, self._state_refs = [], {}
        await asyncio.gather(*(st.aclose() for st in states), return_exceptions=True)
        sync = self._sync
        if sync is not None and not sync.is_current():
            self._sync = None
            await asyncio.to_thread(sync.stop)

    def close(self) -> None:
        """``aclose`` for synchronous code (after ``route_sync``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("close() inside a running event loop; use await aclose()")
        sync = self._sync
        if sync is None:
            asyncio.run(self.aclose())
            return
        sync.run(self.aclose())  # closes the connections of every loop, then the loop itself
        self._sync = None
        sync.stop()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Engine({self._rt.graph!r})"

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._sync is None:
                self._sync = _LoopThread()
                # a script's one-liner (Engine.from_file(...).route_sync(...)) never closes the
                # engine: close its connections at interpreter exit instead of leaking them
                self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
                atexit.register(self._at_exit)
            sync = self._sync
        return sync.run(coro)


def _close_at_exit(ref: weakref.ReferenceType[Engine]) -> None:
    eng = ref()
    if eng is not None and not eng._closed:
        with contextlib.suppress(Exception):  # exiting: nothing is left to tell
            eng.close()


class _LoopThread:
    """An event loop (uvloop when installed) on a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        try:
            import uvloop
            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is optional
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine-sync",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            raise RuntimeError("the engine's sync API was called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def stop(self) -> None:
        loop = self.loop
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(5)
        loop.close()
