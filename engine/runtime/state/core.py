"""``cache.backend`` in, the engine's shared state out: the response cache with single-flight, the
model listings, the rate limiter and the circuits' storage, on whichever backend the URL names.
The executor asks ``State``; only ``open_backend`` knows which backend it is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Literal

from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork

from engine.graph import CacheConfig
from engine.result import Response
from engine.runtime.state.base import WINDOW, Backend, Guard, RateLimiter, SharedCircuits, Warn
from engine.runtime.state.flight import SingleFlight
from engine.runtime.state.listings import Fetch, ModelRegistry
from engine.runtime.state.memory import MemoryBackend
from engine.runtime.state.redis import SCHEMES, RedisBackend
from engine.runtime.state.responses import ResponseCache
from engine.values import Scrubber

__all__ = ["CachePolicy", "SharedUnitOfWork", "State", "open_backend"]

CachePolicy = Literal["off", "use", "refresh"]
_NO_META: Mapping[str, Any] = {}


class SharedUnitOfWork(AsyncInMemoryUnitOfWork):
    """purgatory's in-memory unit of work as this instance's view of the circuits a backend
    shares (``shared``): ``breakers.Circuits`` keeps the view fresh and sends it the transitions."""

    def __init__(self, shared: SharedCircuits) -> None:
        super().__init__()
        self.shared = shared


def open_backend(
    config: CacheConfig,
    guard: Guard,
    *,
    window: float,
    lock_ttl: float,
    lease: float = 1.0,
    staleness: float = 0.5,
) -> Backend:
    """The backend ``cache.backend`` names (nothing connects yet). A new backend: its module
    in this package and its URL scheme here."""
    url = config.url
    if url == "memory":
        return MemoryBackend(window=window)
    if url.startswith(SCHEMES):
        return RedisBackend(
            url,
            config.namespace,
            guard,
            window=window,
            lock_ttl=lock_ttl,
            lease=lease,
            staleness=staleness,
        )
    raise ValueError("cache.backend must be 'memory' or a redis://, rediss:// or unix:// URL")


class State:
    """Build with ``State.create(graph.cache, fetch=..., on_warning=...)``; close with ``aclose``.

    One ``State`` lives as long as the engine. A reload that keeps the backend calls ``configure``
    (new TTLs, same stores and counters); one that changes it needs a new ``State``. Nothing
    connects eagerly: the first operation on a remote backend does, and a backend that is down
    degrades every piece to "no shared state" with one ``StateWarning``, never a failed request.
    """

    def __init__(
        self,
        config: CacheConfig,
        *,
        fetch: Fetch | None,
        on_warning: Warn | None,
        timeout: float,
        cooldown: float,
        lock_ttl: float,
        window: float,
        lease: float,
        staleness: float,
    ) -> None:
        self.config = config
        # a backend error names host and port: masked when the URL came from the environment
        self.guard = Guard(
            on_warning, timeout=timeout, cooldown=cooldown, scrubber=Scrubber.of([config.backend])
        )
        self.storage = open_backend(
            config, self.guard, window=window, lock_ttl=lock_ttl, lease=lease, staleness=staleness
        )
        self.limiter: RateLimiter = self.storage.limiter  # an attribute: read on every request
        self.flights = SingleFlight()
        self.responses = ResponseCache(self.storage.store("resp"), config.responses_ttl)
        self.registry = ModelRegistry(self.storage.store("models"), fetch, ttl=config.models_ttl)

    @classmethod
    def create(
        cls,
        config: CacheConfig,
        *,
        fetch: Fetch | None = None,
        on_warning: Warn | None = None,
        timeout: float = 0.25,
        cooldown: float = 2.0,
        lock_ttl: float = 10.0,
        window: float = WINDOW,
        lease: float = 1.0,
        staleness: float = 0.5,
    ) -> State:
        """``timeout`` bounds each remote operation; after a failure the backend is skipped for
        ``cooldown`` seconds; ``lock_ttl`` bounds a cross-instance single-flight wait on a live
        leader; a leader that dies lets go within ``lease``; ``staleness`` bounds how old an
        instance's view of the shared circuits grows; ``window`` is the rate-limit window (60 s;
        tests shorten them)."""
        return cls(
            config,
            fetch=fetch,
            on_warning=on_warning,
            timeout=timeout,
            cooldown=cooldown,
            lock_ttl=lock_ttl,
            window=window,
            lease=lease,
            staleness=staleness,
        )

    @property
    def backend(self) -> str:
        """The backend's name: ``memory`` or ``redis``."""
        return self.storage.name

    @property
    def remote(self) -> bool:
        """Whether the state is shared with other instances (and its operations yield)."""
        return self.storage.remote

    def configure(self, config: CacheConfig) -> bool:
        """Adopt a reloaded config's TTLs. ``False`` if the backend or the namespace changed:
        build a new State."""
        if config.url != self.config.url or config.namespace != self.config.namespace:
            return False
        self.config = config
        self.responses.ttl = config.responses_ttl
        self.registry.ttl = config.models_ttl
        return True

    def cache_policy(self, request: Mapping[str, Any]) -> CachePolicy:
        """``off`` (not cacheable), ``use`` (look up, then store) or ``refresh`` (metadata
        ``cache: refresh``: skip the lookup, store the fresh answer).

        The same decision as ``plan.cache_decision`` (a test holds them equal), without building
        its explanation on every request."""
        config = self.config
        if config.responses_ttl is None:
            return "off"
        meta = request.get("metadata") or _NO_META
        flag = meta.get("cache")
        if flag is False or request.get("stream"):
            return "off"
        temp = request.get("temperature")
        if temp is None or temp > config.max_temperature:
            return "off"
        return "refresh" if flag == "refresh" else "use"

    async def respond(
        self,
        endpoint: str,
        body: bytes | str,
        call: Callable[[], Awaitable[Response]],
        *,
        refresh: bool = False,
        deadline: float | None = None,
    ) -> Response:
        """A cacheable request to one endpoint (``Connection.identity`` and the model: who answers,
        as whom): the cached answer (``cached=True``), else ``call()``
        once for all identical requests in flight (here, and on a remote backend on every
        instance), its answer stored for ``cache.responses.ttl``. ``refresh`` skips the lookup
        and replaces the entry. ``deadline`` is an event-loop time (``loop.time()``). ``call``'s
        exceptions reach every caller sharing it, and nothing is stored."""
        cache = self.responses
        key = cache.key(endpoint, body)
        if refresh:
            return await self.flights.do(key + ":refresh", partial(self._upstream, key, call))
        if cache.local is not None:
            # A local lookup never yields, so nothing can land between a miss and the flight.
            hit = cache.peek(key)
            if hit is not None:
                return hit
            return await self.flights.do(key, partial(self.kept, key, call))
        # A remote lookup yields: do it inside the flight, so callers that arrive while it runs
        # share it, and none can miss an answer stored just before its own flight starts.
        return await self.flights.do(key, partial(self._shared, key, call, deadline))

    async def kept(self, key: str, call: Callable[[], Awaitable[Response]]) -> Response:
        """An in-process flight (``flights.do(key, partial(kept, key, call))`` after a local
        ``peek`` missed): the call, its answer kept."""
        response = await call()
        self.responses.keep(key, response)
        return response

    async def _upstream(self, key: str, call: Callable[[], Awaitable[Response]]) -> Response:
        """A refreshed flight: the call, its answer stored."""
        response = await call()
        await self.storage.flights.written()  # an earlier answer's store must not land after this one
        await self.responses.set(key, response)
        return response

    async def _shared(
        self, key: str, call: Callable[[], Awaitable[Response]], deadline: float | None
    ) -> Response:
        return await self.storage.flights.run(key, call, self.responses, deadline=deadline)

    def breaker_factory(self, threshold: int = 5, recovery: float = 60.0) -> AsyncCircuitBreakerFactory:
        """A purgatory factory for this engine's circuits: in memory, and on a remote backend
        a ``SharedUnitOfWork`` whose ``shared`` circuits ``breakers.Circuits`` keeps in step (a
        circuit opened by one instance is open for all; while the backend is down each instance
        goes on with its own view, and the outage is reported once with the rest). Per-circuit
        settings go to ``get_breaker(name, threshold, ttl)``."""
        shared = self.storage.circuits()
        uow = AsyncInMemoryUnitOfWork() if shared is None else SharedUnitOfWork(shared)
        return AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=recovery, uow=uow)

    def stats(self) -> dict[str, Any]:
        reg = self.registry.stats()
        return {
            "backend": self.backend,
            "degraded": self.guard.degraded,
            "backend_failures": self.guard.failures,
            "flights": {
                "started": self.flights.started,
                "joined": self.flights.joined,
                "in_flight": len(self.flights),
                **self.storage.flights.stats(),
            },
            "models": {"hits": reg.hits, "misses": reg.misses, "size": reg.size, "errors": reg.errors},
        }

    async def ping(self) -> bool:
        """Whether the shared backend answers now (memory: always)."""
        return await self.storage.ping()

    async def aclose(self) -> None:
        await self.storage.aclose()
