"""``SyncEngine``: the ``Engine``'s blocking twin, method for method under the same names (the way
httpx's ``Client`` mirrors its ``AsyncClient``). Every call runs on the engine's own event loop
thread; none may be made inside a running event loop (use ``Engine`` there).

```python
with SyncEngine.from_file("routes.yaml") as eng:
    print(eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).text)
    for event in eng.stream({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}):
        print(event)
```
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

from engine.api import Engine, Subscribable
from engine.graph import RoutingGraph
from engine.plan import Plan, PlanEstimate
from engine.result import Response
from engine.runtime import (
    EngineOptions,
    ModelListing,
    ProviderHealth,
    RegistryStats,
    RequestLike,
    SyncRouteMany,
    SyncStream,
    outside_loop,
)

__all__ = ["SyncEngine"]

T = TypeVar("T")


class SyncEngine(Subscribable):
    """Routes requests through a compiled routing graph, blocking; options as ``Engine``'s."""

    def __init__(
        self,
        graph: RoutingGraph,
        *,
        source: str | Path | None = None,
        profile: str | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        self._bind(
            Engine(
                graph,
                **options,
                source=source,
                profile=profile,
            )
        )

    @classmethod
    def of(cls, engine: Engine) -> SyncEngine:
        """The blocking view of ``engine`` (what ``engine.sync`` returns)."""
        view = cls.__new__(cls)
        view._bind(engine)
        return view

    def _bind(self, engine: Engine) -> None:
        self.aio = engine  # the async engine underneath: same graph, connections, circuits
        self._core = engine._core
        engine._sync_view = self

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        profile: str | None = None,
        **options: Unpack[EngineOptions],
    ) -> SyncEngine:
        """``Engine.from_file``, blocking. Raises ``ConfigError``."""
        return cls.of(
            Engine.from_file(
                path,
                profile,
                **options,
            )
        )

    @classmethod
    def from_graph(cls, graph: RoutingGraph, **options: Unpack[EngineOptions]) -> SyncEngine:
        return cls(graph, **options)

    @property
    def graph(self) -> RoutingGraph:
        """The graph new requests start on."""
        return self.aio.graph

    def _run(self, name: str, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._core.run_sync(f"{name}()", f"await {name}() of an Engine", coro)

    def route(self, request: RequestLike) -> Response:
        """``Engine.route``, blocking."""
        return self._run("route", functools.partial(self.aio.route, request))

    def route_many(self, requests: Iterable[RequestLike], *, concurrency: int = 8) -> SyncRouteMany:
        """``for index, outcome in eng.route_many(reqs, concurrency=16)``: ``Engine.route_many``
        as an iterator (the requests run on the engine's loop thread meanwhile; ``requests`` is
        read there too). A context manager; ``close()`` cancels what is still in flight."""
        return self._core.route_many_sync(requests, concurrency)

    def count_tokens(self, request: RequestLike) -> int:
        """``Engine.count_tokens``, blocking."""
        return self._run("count_tokens", functools.partial(self.aio.count_tokens, request))

    def stream(self, request: RequestLike) -> SyncStream:
        """``for event in eng.stream(req)``: ``Engine.stream`` as an iterator (also a context
        manager; ``close()`` releases the upstream response when you stop early)."""
        return self._core.stream_sync(request)

    def plan(self, request: RequestLike) -> Plan:
        return self.aio.plan(request)

    def reload(
        self, path: str | Path | None = None, profile: str | None = None, *, graph: RoutingGraph | None = None
    ) -> RoutingGraph:
        """``Engine.reload``: compiles on the calling thread, never on the engine's loop, which
        keeps answering meanwhile; the swap then happens on the loop."""
        if graph is None:
            outside_loop("reload()", "await areload() of an Engine")
            graph = self.aio._compile(path, profile)
        return self._run("reload", functools.partial(_swap, self.aio, graph))

    def warmup(self) -> dict[str, str]:
        return self._run("warmup", self.aio.warmup)

    def health(self) -> dict[str, ProviderHealth]:
        return self.aio.health()

    def estimate(self, request: RequestLike) -> dict[str, PlanEstimate]:
        return self.aio.estimate(request)

    def metrics(self) -> dict[str, dict[str, float]]:
        return self.aio.metrics()

    def exposition(self) -> bytes:
        return self.aio.exposition()

    def list_models(self, provider: str, *, refresh: bool = False) -> ModelListing:
        return self._run("list_models", functools.partial(self.aio.list_models, provider, refresh=refresh))

    def list_models_many(
        self,
        providers: Iterable[str] | None = None,
        *,
        max_concurrency: int = 10,
        timeout: float | None = None,
    ) -> dict[str, ModelListing | Exception]:
        return self._run(
            "list_models_many",
            functools.partial(
                self.aio.list_models_many, providers, max_concurrency=max_concurrency, timeout=timeout
            ),
        )

    def invalidate_models(self, provider: str | None = None) -> None:
        self._run("invalidate_models", functools.partial(self.aio.invalidate_models, provider))

    def model_stats(self) -> RegistryStats:
        return self.aio.model_stats()

    def close(self) -> None:
        """Close every connection, then the engine's loop thread."""
        self._core.close()

    def __enter__(self) -> SyncEngine:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncEngine({self.graph!r})"


async def _swap(engine: Engine, graph: RoutingGraph) -> RoutingGraph:
    return await engine.areload(graph=graph)
