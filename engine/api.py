"""The ``Engine`` facade: a routes.yaml (or a compiled graph) in, routed responses, streams, plans and
health out; the one hub that knows every stage, from compiler to runtime.

```python
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from engine.compiler import compile_file
from engine.graph import RoutingGraph
from engine.plan import Plan, build_plan
from engine.request import Request, normalize_request
from engine.result import Response
from engine.runtime.backends import Fault, TransportOption, resolve_backend
from engine.runtime.breakers import CLOSED, HALF_OPEN, OPEN, Circuits
from engine.runtime.context import Shared, perf
from engine.runtime.events import BreakerChanged, Hooks
from engine.runtime.executor import Runtime
from engine.runtime.health import ProviderHealth
from engine.runtime.streaming import EventStream
from engine.runtime.transport import Connection, ConnectionPool

__all__ = ["Engine"]

RequestLike = Request | dict[str, Any]
T = TypeVar("T")
_SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class Engine:
    """Routes requests through a compiled routing graph.

    Options: ``transport`` is ``"aiohttp"`` (default: an aiohttp session per provider, the
    fastest measured), ``"httpx"`` (httpx's own connection pool), ``"httpx-aiohttp"`` or a
    callable ``(provider) -> httpx.AsyncBaseTransport``; ``seed`` makes weighted, least-latency and
    jitter draws repeatable; ``circuit_factory`` is a ``purgatory.AsyncCircuitBreakerFactory``
    (e.g. with a Redis unit of work, to share circuits between engines).
    """

    def __init__(self, graph: RoutingGraph, *, transport: TransportOption = None,
                 seed: int | None = None, circuit_factory: Any = None,
                 source: str | Path | None = None, profile: str | None = None) -> None:
        self._hooks = Hooks()
        circuits = Circuits(circuit_factory, on_change=self._breaker_changed)
        self._circuits = circuits
        self._shared = Shared(ConnectionPool(*resolve_backend(transport)), circuits, self._hooks,
                              random.Random(seed))
        self._rt = Runtime(graph, self._shared)
        self._source = Path(source) if source is not None else None
        self._profile = profile
        self._unclosed: list[Connection] = []  # released by a reload with no loop to close them
        self._closing: set[asyncio.Task[None]] = set()
        self._sync: _LoopThread | None = None
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

    # -- requests -------------------------------------------------------------------------------

    async def route(self, request: RequestLike) -> Response:
        """Route one request; raises ``NoRouteError``, ``AllTargetsFailed``, ``DeadlineExceeded``
        or ``ProviderError`` (each listing its attempts)."""
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
        ``ToolCallDelta`` events, then one ``Done``. Raises ``NoRouteError`` at once."""
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
        current graph stays."""
        if graph is None:
            source = Path(path) if path is not None else self._source
            if source is None:
                raise ValueError("this engine was built from a graph: pass path= or graph=")
            use_profile = profile if profile is not None else self._profile
            graph = compile_file(source, profile=use_profile)
            self._source, self._profile = source, use_profile
        new = Runtime(graph, self._shared)
        with self._lock:
            old, self._rt = self._rt, new
        old.retired = True
        if not old.inflight:
            self._release(old)
        return graph

    def _release(self, rt: Runtime) -> None:
        """Drop a retired runtime's connections; close those no live graph uses."""
        pool = self._shared.pool
        unused = [c for c in rt.connections if pool.release(c)]
        rt.connections = []
        if not unused:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._unclosed += unused
            return
        for conn in unused:
            task = asyncio.ensure_future(conn.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def warmup(self) -> dict[str, str]:
        """Open a connection to every provider in parallel (a GET of its model listing); returns
        per provider the status, or the error kind when it could not be reached."""
        async def one(conn: Connection) -> str:
            try:
                return str(await conn.warm())
            except Fault as fault:
                return f"{fault.kind}: {fault.detail}"

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
        """Subscribe to ``attempt_start``, ``attempt_end``, ``retry``, ``failover`` or ``breaker``;
        returns the function that unsubscribes. Nothing is built for events nobody hears."""
        return self._hooks.on(event, callback)

    def _breaker_changed(self, circuit: str, state: str) -> None:
        if self._hooks.breaker:
            self._hooks.fire(self._hooks.breaker, BreakerChanged(circuit, state, perf()))

    async def aclose(self) -> None:
        """Close every connection (also those of the ``route_sync`` loop); routing afterwards
        raises ``RuntimeError``."""
        self._closed = True
        stragglers = [t for t in self._shared.stragglers if t.get_loop() is asyncio.get_running_loop()]
        if stragglers:
            await asyncio.wait(stragglers)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        unclosed, self._unclosed = self._unclosed, []
        await asyncio.gather(*(c.aclose() for c in unclosed), return_exceptions=True)
        await self._shared.pool.aclose()
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
            sync = self._sync
        return sync.run(coro)


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
