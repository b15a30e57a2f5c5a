"""A provider's settings in, ready-to-send exchanges out: one pooled backend per provider (and event
loop), URLs and headers built once with secrets revealed here and nowhere else, and the pool that
lets a reloaded graph keep the connections of providers that did not change."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

from engine.errors import ListingError
from engine.graph import Provider
from engine.providers.base import Kind, loads
from engine.runtime.backends import (
    Backend,
    BackendFactory,
    Fault,
    Reply,
    Streamed,
    error_detail,
)
from engine.values import Scrubber, Secret, format_duration

__all__ = ["Closed", "Connection", "ConnectionPool", "fingerprint", "identity"]

USER_AGENT: Final = "engine/0.1"
_URL_CACHE_MAX: Final = 256  # pass-through targets: one URL per requested model, bounded


def fingerprint(provider: Provider) -> Hashable:
    """Everything a provider's connection depends on: equal fingerprints share one backend."""
    s = provider.speed
    return (
        provider.name,
        provider.kind,
        provider.base_url,
        provider.api_key,
        tuple(sorted(provider.headers.items())),
        s.connect,
        s.read,
        s.pool,
        provider.pool,
        provider.max_response,
    )


class Closed(Exception):
    """A connection was used after it was closed (``Engine.aclose()`` while requests were in
    flight, or a retired graph's): nothing is sent and no backend is created again. The
    executor turns it into the request's ``RouteError``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: the engine was closed")


def _reveal(value: str | Secret | None) -> str | None:
    return value.reveal() if isinstance(value, Secret) else value


def _headers(provider: Provider, kind: Kind) -> dict[str, str]:
    """The headers of every request to ``provider``, secrets revealed."""
    headers: dict[str, str] = {
        "accept-encoding": "gzip",
        "user-agent": USER_AGENT,
        "content-type": "application/json",
    }
    for name, value in kind.auth_headers(_reveal(provider.api_key)).items():
        headers[name.lower()] = value
    for name, raw in provider.headers.items():
        revealed = _reveal(raw)
        if revealed:  # an empty value (``${ORG:-}`` unset) is not sent
            headers[name.lower()] = revealed
    return headers


def identity(provider: Provider, kind: Kind) -> str:
    """A digest of who answers and as whom: the kind, the base URL and every header sent (the
    credentials among them). Keys of shared state carry it, so two deployments with the same
    names but another endpoint or key never share an answer; the credentials never leave."""
    h = hashlib.sha256(kind.name.encode())
    for part in (
        _reveal(provider.base_url) or "",
        *sorted(f"{k}: {v}" for k, v in _headers(provider, kind).items()),
    ):
        h.update(b"\x00")
        h.update(part.encode())
    return h.hexdigest()[:32]


class Connection:
    """One provider's backend (one per event loop, created lazily), revealed headers and URLs.

    ``refs`` counts the live routing graphs that use it; the pool closes it when that reaches 0.
    ``identity`` (see ``identity()``) keys what it answers in shared state. Once ``closed`` it
    creates no backend again: a try raises ``Closed``.
    """

    __slots__ = (
        "_backend",
        "_base_url",
        "_factory",
        "_headers",
        "_loop",
        "_others",
        "_prepare",
        "_scrubber",
        "_targets",
        "budget",
        "closed",
        "identity",
        "kind",
        "name",
        "provider",
        "refs",
    )

    def __init__(
        self, provider: Provider, kind: Kind, factory: BackendFactory, prepare: Callable[..., Any]
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self.kind = kind
        self.refs = 0
        self.closed = False
        s = provider.speed
        self.budget = s.pool + s.connect + s.read  # a GET's whole time: what one try gets
        self._factory = factory
        self._prepare = prepare
        self._backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._others: dict[asyncio.AbstractEventLoop, Backend] = {}
        self._targets: dict[tuple[str, bool, tuple[tuple[str, str], ...]], Any] = {}
        self._base_url = _reveal(provider.base_url) or ""
        self._headers = list(_headers(provider, kind).items())
        self.identity = identity(provider, kind)
        self._scrubber = Scrubber.of((provider.api_key, provider.base_url, *provider.headers.values()))

    def _target(self, model: str, stream: bool, extra: tuple[tuple[str, str], ...] = ()) -> Any:
        """The prepared URL and headers; ``extra`` (a request's own protocol headers, such as
        ``anthropic-beta``, from ``Kind.request_headers``) replace the fixed ones of their name."""
        key = (model, stream, extra)
        target = self._targets.get(key)
        if target is None:
            headers = self._headers
            if extra:
                names = {name for name, _ in extra}
                headers = [h for h in headers if h[0] not in names] + list(extra)
            target = self._prepare(self.kind.url(self._base_url, model, stream), headers)
            if len(self._targets) < _URL_CACHE_MAX:
                self._targets[key] = target
        return target

    def backend(self) -> Backend:
        """This event loop's backend (``route_sync`` runs on a loop of its own)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._backend is not None:
            return self._backend
        if self.closed:
            raise Closed(self.name)
        if self._backend is None:
            self._loop = loop
            self._backend = self._factory(self.provider)
            return self._backend
        other = self._others.get(loop)
        if other is None:
            other = self._others[loop] = self._factory(self.provider)
        return other

    async def post(self, model: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
        """Send a chat request and read the whole answer; raise ``Fault`` below HTTP."""
        return await self.backend().post(self._target(model, False, extra), body)

    async def open_stream(self, model: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> Streamed:
        """Send a streaming chat request; the caller reads ``lines`` and closes it."""
        return await self.backend().open(self._target(model, True, extra), body)

    async def post_json(self, url: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
        """POST ``body`` to ``url`` (one the kind names, under this provider's base URL) with
        this provider's headers (``extra`` replacing those of their name), bounded by
        ``budget``; raise ``Fault`` below HTTP or past it."""
        names = {name for name, _ in extra}
        headers = [h for h in self._headers if h[0] not in names] + list(extra)
        try:
            async with asyncio.timeout(self.budget):
                return await self.backend().post(self._prepare(url, headers), body)
        except TimeoutError:
            raise Fault("timeout", f"no whole answer within {format_duration(self.budget)}") from None

    @property
    def base_url(self) -> str:
        """The provider's base URL, revealed (for the kind's own URLs; never shown)."""
        return self._base_url

    async def warm(self) -> int:
        """GET the model listing (opens a pooled connection); returns the status. The whole GET
        is bounded by ``budget`` (the speed's pool + connect + read): past it, ``Fault``
        ('timeout'), however steadily an upstream trickles its answer."""
        target = self._prepare(self.kind.models_url(self._base_url), self._headers)
        try:
            async with asyncio.timeout(self.budget):
                return (await self.backend().get(target)).status
        except TimeoutError:
            raise Fault("timeout", f"no whole answer within {format_duration(self.budget)}") from None

    async def get_json(self, url: str, what: str = "model listing") -> Any:
        """GET ``url`` with this provider's headers (its auth) and decode the JSON answer, the
        whole GET bounded by ``budget``. Raises ``ListingError`` (its attempt says the kind):
        ``status`` set for an answer of 400 or more, ``None`` below HTTP, past the budget or for
        a body that is not JSON. No message holds the URL or a secret."""
        start = time.perf_counter()
        reply = await self._fetch(url, what, start)
        return self._decoded(reply, what, time.perf_counter() - start)

    async def _fetch(self, url: str, what: str, start: float) -> Reply:
        """The whole answer to a GET of ``url`` within ``budget``; a failure to get one raises
        ``ListingError`` (latency counted from ``start``)."""
        name = self.name
        try:
            async with asyncio.timeout(self.budget):
                return await self.backend().get(self._prepare(url, self._headers))
        except TimeoutError:
            took = f"no whole answer within {format_duration(self.budget)}"
            raise ListingError.of(
                name,
                f"{name}: {what} timed out: {took}",
                "timeout",
                took,
                body=f"timeout: {took}",
                latency=time.perf_counter() - start,
            ) from None
        except Fault as fault:
            detail = self.scrub(str(fault))
            raise ListingError.of(
                name,
                f"{name}: {what} failed: {detail}",
                fault.kind,
                self.scrub(fault.detail),
                body=detail,
                latency=time.perf_counter() - start,
            ) from None
        except Closed as exc:
            raise ListingError.of(
                name,
                f"{name}: {what} failed: the engine was closed",
                "closed",
                "the engine was closed",
                body=str(exc),
                latency=time.perf_counter() - start,
            ) from None

    def _decoded(self, reply: Reply, what: str, latency: float) -> Any:
        """The JSON of a whole answer; ``ListingError`` for an HTTP error or a body that is not JSON."""
        name = self.name
        if reply.status >= 400:
            detail = self.scrub(error_detail(reply.content, self.kind))
            raise ListingError.of(
                name,
                f"{name}: {what} answered HTTP {reply.status}: {detail}",
                "status",
                detail,
                status=reply.status,
                latency=latency,
            )
        try:
            return loads(reply.content)
        except ValueError as exc:
            detail = self.scrub(f"not JSON: {exc}")
            raise ListingError.of(
                name,
                f"{name}: {what} answered {detail}",
                "protocol",
                detail,
                status=reply.status,
                latency=latency,
            ) from None

    def scrub(self, text: str, limit: int | None = 300) -> str:
        """``text`` with every secret this provider was configured with masked (an error body may
        echo a key, whole or inside longer text), then cut to ``limit`` characters."""
        return self._scrubber.scrub(text, limit)

    async def aclose(self) -> None:
        """Close the backends this event loop can close (and ask other loops to close theirs);
        no backend is created afterwards."""
        self.closed = True
        here = asyncio.get_running_loop()
        pending: list[tuple[asyncio.AbstractEventLoop | None, Backend]] = []
        if self._backend is not None:
            pending.append((self._loop, self._backend))
        pending += list(self._others.items())
        self._backend, self._loop, self._others = None, None, {}
        for loop, backend in pending:
            if loop is here:
                await backend.aclose()
            elif loop is not None and not loop.is_closed() and loop.is_running():
                future = asyncio.run_coroutine_threadsafe(backend.aclose(), loop)
                await asyncio.wrap_future(future)

    def __repr__(self) -> str:
        return f"Connection({self.name!r})"


class ConnectionPool:
    """Connections shared across routing graphs: a reloaded graph reuses the connection of every
    provider whose settings did not change."""

    def __init__(self, factory: BackendFactory, prepare: Callable[..., Any]) -> None:
        self.factory = factory
        self.prepare = prepare
        self.closed = False
        self._by_print: dict[Hashable, Connection] = {}

    def acquire(self, provider: Provider, kind: Kind) -> Connection:
        key = fingerprint(provider)
        conn = self._by_print.get(key)
        if conn is None:
            conn = Connection(provider, kind, self.factory, self.prepare)
            conn.closed = self.closed  # a graph compiled after aclose() sends nothing
            self._by_print[key] = conn
        conn.refs += 1
        return conn

    def release(self, conn: Connection) -> bool:
        """Drop one graph's reference; ``True`` when the connection is unused and must be closed."""
        conn.refs -= 1
        if conn.refs > 0:
            return False
        for key, value in list(self._by_print.items()):
            if value is conn:
                del self._by_print[key]
        return True

    def close_now(self) -> None:
        """Mark every connection closed at once (no try creates a backend from here on); the
        backends themselves close in ``aclose``."""
        self.closed = True
        for conn in self._by_print.values():
            conn.closed = True

    async def aclose(self) -> None:
        self.close_now()
        conns, self._by_print = list(self._by_print.values()), {}
        await asyncio.gather(*(c.aclose() for c in conns), return_exceptions=True)
