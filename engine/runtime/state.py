"""``cache.backend`` in, the engine's shared state out: response cache, model registry, single-flight,
rate limiter and circuit-breaker storage, in memory or on one Redis (this module owns its client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from purgatory import (
    AsyncCircuitBreakerFactory,
    AsyncInMemoryUnitOfWork,
    AsyncRedisUnitOfWork,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.graph import CacheConfig
from engine.result import Response
from engine.runtime.cache import Guard, ResponseCache, Store, Warn, memory_store, redis_store
from engine.runtime.coalesce import RedisFlights, SingleFlight
from engine.runtime.limits import WINDOW, MemoryLimiter, RateLimiter, RedisLimiter
from engine.runtime.registry import Fetch, ModelRegistry
from engine.values import Scrubber

__all__ = ["CachePolicy", "State", "redis_client"]

CachePolicy = Literal["off", "use", "refresh"]


def redis_client(url: str, *, timeout: float = 0.25) -> aioredis.Redis:
    """A client for ``redis://`` / ``rediss://`` URLs with short socket timeouts and one immediate
    reconnect (redis-py's default backs off and retries three times)."""
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False,
        retry=Retry(NoBackoff(), 1), health_check_interval=30,
    )


class State:
    """Build with ``State.create(graph.cache, fetch=..., on_warning=...)``; close with ``aclose``.

    One ``State`` lives as long as the engine. A reload that keeps the backend calls ``configure``
    (new TTLs, same stores and counters); one that changes it needs a new ``State``. Nothing
    connects eagerly: the first Redis operation does, and a Redis that is down degrades every piece
    to "no shared state" with one ``StateWarning``, never a failed request.
    """

    def __init__(self, config: CacheConfig, *, fetch: Fetch | None, on_warning: Warn | None,
                 timeout: float, cooldown: float, lock_ttl: float, window: float) -> None:
        self.config = config
        url = config.url
        self.backend: Literal["memory", "redis"] = "memory" if url == "memory" else "redis"
        # a Redis error names host and port: masked when the URL came from the environment
        self.guard = Guard(on_warning, timeout=timeout, cooldown=cooldown,
                           scrubber=Scrubber.of([config.backend]))
        self.flights = SingleFlight()
        self.redis: aioredis.Redis | None = None
        self.remote: RedisFlights | None = None
        self.limiter: RateLimiter
        responses: Store
        models: Store
        if self.backend == "memory":
            responses, models = memory_store(), memory_store()
            self.limiter = MemoryLimiter(window)
        else:
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("cache.backend must be 'memory' or a redis://, rediss:// or "
                                 "unix:// URL")
            ns = config.namespace
            try:
                self.redis = redis_client(url, timeout=timeout)
            except ValueError as exc:  # redis-py's message may quote the URL
                raise ValueError(f"cache.backend: {self.guard.scrub(str(exc))}") from None
            responses = redis_store(self.redis, f"{ns}:resp", self.guard)
            models = redis_store(self.redis, f"{ns}:models", self.guard)
            self.limiter = RedisLimiter(self.redis, self.guard, window=window, prefix=f"{ns}:rl")
            self.remote = RedisFlights(self.redis, self.guard, lock_ttl=lock_ttl,
                                       prefix=f"{ns}:flight")
        self.responses = ResponseCache(responses, config.responses_ttl)
        self.registry = ModelRegistry(models, fetch, ttl=config.models_ttl)

    @classmethod
    def create(cls, config: CacheConfig, *, fetch: Fetch | None = None,
               on_warning: Warn | None = None, timeout: float = 0.25, cooldown: float = 2.0,
               lock_ttl: float = 10.0, window: float = WINDOW) -> State:
        """``timeout`` bounds each Redis operation; after a failure Redis is skipped for
        ``cooldown`` seconds; ``lock_ttl`` bounds a cross-instance single-flight wait; ``window``
        is the rate-limit window (60 s; tests shorten it)."""
        return cls(config, fetch=fetch, on_warning=on_warning, timeout=timeout, cooldown=cooldown,
                   lock_ttl=lock_ttl, window=window)

    @property
    def shared(self) -> bool:
        """Whether the state lives outside this process (every call is a round trip)."""
        return self.backend != "memory"

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

    async def respond(self, endpoint: str, body: bytes | str,
                      call: Callable[[], Awaitable[Response]], *, refresh: bool = False,
                      deadline: float | None = None) -> Response:
        """A cacheable request to one endpoint (``Connection.identity`` and the model: who answers,
        as whom): the cached answer (``cached=True``), else ``call()``
        once for all identical requests in flight (here, and with Redis on every instance), its
        answer stored for ``cache.responses.ttl``. ``refresh`` skips the lookup and replaces the
        entry. ``deadline`` is an event-loop time (``loop.time()``). ``call``'s exceptions reach
        every caller sharing it, and nothing is stored."""
        cache = self.responses
        key = cache.key(endpoint, body)
        if refresh:
            return await self.flights.do(key + ":refresh", partial(self._upstream, key, call))
        if self.remote is None:
            # A memory lookup never yields, so nothing can land between a miss and the flight.
            hit = await cache.get(key)
            if hit is not None:
                return hit
            return await self.flights.do(key, partial(self._upstream, key, call))
        # A Redis lookup yields: do it inside the flight, so callers that arrive while it runs
        # share it, and none can miss an answer stored just before its own flight starts.
        return await self.flights.do(key, partial(self._shared, key, call, deadline))

    async def _upstream(self, key: str, call: Callable[[], Awaitable[Response]]) -> Response:
        response = await call()
        await self.responses.set(key, response)
        return response

    async def _shared(self, key: str, call: Callable[[], Awaitable[Response]],
                      deadline: float | None) -> Response:
        assert self.remote is not None
        peek = partial(self.responses.get, key)
        hit = await peek()
        if hit is not None:
            return hit
        return await self.remote.run(key, partial(self._upstream, key, call), peek,
                                     deadline=deadline)

    def breaker_factory(self, threshold: int = 5, recovery: float = 60.0
                        ) -> AsyncCircuitBreakerFactory:
        """A purgatory factory whose circuits live in this state's backend: in memory, or with
        purgatory's Redis unit of work (so a circuit opened by one instance is open for all).
        Per-circuit settings go to ``get_breaker(name, threshold, ttl)``.

        With Redis, the repository's client is this state's, behind the guard: while Redis is
        down, circuit operations raise ``ConnectionError`` at once (no connect attempt) and the
        outage is reported once with the cache's and limiter's."""
        uow: AsyncInMemoryUnitOfWork | AsyncRedisUnitOfWork
        if self.redis is None:
            uow = AsyncInMemoryUnitOfWork()
        else:
            uow = AsyncRedisUnitOfWork(_breaker_url(self.config.url, self.guard.timeout))
            # Replace the client purgatory made from the URL (never connected) with ours: short
            # timeouts, the guard's cool-down, the namespace, closed by aclose.
            cast(Any, uow.contexts).redis = _GuardedRedis(self.redis, self.guard,
                                                          f"{self.config.namespace}:")
        return AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=recovery,
                                          uow=uow)

    def stats(self) -> dict[str, Any]:
        reg = self.registry.stats()
        out: dict[str, Any] = {
            "backend": self.backend, "degraded": self.guard.degraded,
            "backend_failures": self.guard.failures,
            "flights": {"started": self.flights.started, "joined": self.flights.joined,
                        "in_flight": len(self.flights)},
            "models": {"hits": reg.hits, "misses": reg.misses, "size": reg.size,
                       "errors": reg.errors},
        }
        if self.remote is not None:
            out["flights"].update(led=self.remote.led, followed=self.remote.followed,
                                  fell_back=self.remote.fell_back)
        return out

    async def ping(self) -> bool:
        """Whether the shared backend answers now (memory: always)."""
        if self.redis is None:
            return True
        client = self.redis
        return bool(await self.guard.run("ping", lambda: client.ping(), False))

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class _GuardedRedis:
    """The commands purgatory's Redis repository uses, through the guard and under the
    namespace (purgatory's own keys have none); raises when skipped."""

    __slots__ = ("_client", "_guard", "_prefix")

    def __init__(self, client: aioredis.Redis, guard: Guard, prefix: str) -> None:
        self._client = client
        self._guard = guard
        self._prefix = prefix

    async def _run(self, op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        result = await self._guard.run(op, fn, _DOWN)
        if result is _DOWN:
            raise ConnectionError("shared state unavailable (Redis)")
        return result

    async def initialize(self) -> _GuardedRedis:
        return self

    async def get(self, key: str) -> Any:
        return await self._run("breakers.get", lambda: self._client.get(self._prefix + key))

    async def set(self, key: str, value: Any) -> Any:
        return await self._run("breakers.set",
                               lambda: self._client.set(self._prefix + key, value))

    async def incr(self, key: str) -> Any:
        return await self._run("breakers.incr", lambda: self._client.incr(self._prefix + key))


_DOWN: Any = object()
_NO_META: Mapping[str, Any] = {}


def _breaker_url(url: str, timeout: float) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(timeout))
    query.setdefault("socket_connect_timeout", str(timeout))
    return urlunsplit(parts._replace(query=urlencode(query)))
