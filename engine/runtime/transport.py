"""A provider's settings in, HTTP exchanges out: one pooled httpx transport per provider, headers with
secrets revealed once, and the one place httpx and aiohttp exceptions become our error kinds.

Requests go straight to the provider's ``httpx.AsyncBaseTransport`` (``handle_async_request``) with
a prebuilt ``httpx.Request``: measured on loopback, ``AsyncClient.post`` costs ~130 us more per call
than the transport itself (auth flow, redirects, cookies, URL and header re-parsing), and the
engine needs none of that. Timeouts travel in the request's ``timeout`` extension, pool limits are
the transport's, gzip is accepted and decoded by ``httpx.Response``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Final

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from engine.graph import Provider
from engine.providers.base import Kind
from engine.values import MASK, Secret

__all__ = [
    "Connection",
    "ConnectionPool",
    "Fault",
    "TransportFactory",
    "TransportOption",
    "fingerprint",
    "resolve_factory",
]

TransportFactory = Callable[[Provider], httpx.AsyncBaseTransport]
TransportOption = str | TransportFactory | None

USER_AGENT: Final = "engine/0.1"
_URL_CACHE_MAX: Final = 256  # pass-through targets: one URL per requested model, bounded


class Fault(Exception):
    """A try that failed below HTTP: ``kind`` is timeout, connect, reset or protocol; ``detail``
    never contains a URL, header or secret."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def limits(provider: Provider) -> httpx.Limits:
    pool = provider.pool
    return httpx.Limits(max_connections=pool.max_connections,
                        max_keepalive_connections=pool.max_keepalive,
                        keepalive_expiry=pool.keepalive_expiry)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every transport (loading the CA bundle costs ~20 ms)."""
    return httpx.create_ssl_context()


def _aiohttp_factory(provider: Provider) -> httpx.AsyncBaseTransport:
    return AiohttpTransport(verify=_tls(), limits=limits(provider), trust_env=False)


def _httpx_factory(provider: Provider) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(verify=_tls(), limits=limits(provider), trust_env=False)


_NAMED_FACTORIES: Final[dict[str, TransportFactory]] = {
    "aiohttp": _aiohttp_factory,
    "httpx": _httpx_factory,
}


def resolve_factory(option: TransportOption) -> TransportFactory:
    """``None``/``"aiohttp"`` (default, fastest measured), ``"httpx"`` (httpx's own pool), or a
    callable ``(provider) -> httpx.AsyncBaseTransport`` of the caller's."""
    if option is None:
        return _aiohttp_factory
    if isinstance(option, str):
        try:
            return _NAMED_FACTORIES[option]
        except KeyError:
            raise ValueError(f"unknown transport {option!r}; expected 'aiohttp', 'httpx' or a "
                             "callable returning an httpx.AsyncBaseTransport") from None
    return option


def fingerprint(provider: Provider) -> Hashable:
    """Everything a provider's connection depends on: equal fingerprints share one transport."""
    s = provider.speed
    return (provider.name, provider.kind, provider.base_url, provider.api_key,
            tuple(sorted(provider.headers.items())), s.connect, s.read, s.pool, provider.pool)


def _reveal(value: str | Secret | None) -> str | None:
    return value.reveal() if isinstance(value, Secret) else value


class Connection:
    """One provider's transport (one per event loop, created lazily), revealed headers and URLs.

    ``refs`` counts the live routing graphs that use it; the pool closes it when that reaches 0.
    """

    __slots__ = ("_base_url", "_factory", "_headers", "_loop", "_others", "_secrets",
                 "_timeout", "_transport", "_urls", "kind", "name", "provider", "refs")

    def __init__(self, provider: Provider, kind: Kind, factory: TransportFactory) -> None:
        self.provider = provider
        self.name = provider.name
        self.kind = kind
        self.refs = 0
        self._factory = factory
        self._transport: httpx.AsyncBaseTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._others: dict[asyncio.AbstractEventLoop, httpx.AsyncBaseTransport] = {}
        self._urls: dict[tuple[str, bool], tuple[httpx.URL, list[tuple[bytes, bytes]]]] = {}
        s = provider.speed
        self._timeout = {"timeout": {"connect": s.connect, "read": s.read, "write": s.read,
                                     "pool": s.pool}}
        api_key = _reveal(provider.api_key)
        self._base_url = _reveal(provider.base_url) or ""
        headers: dict[str, str] = {"accept-encoding": "gzip", "user-agent": USER_AGENT,
                                   "content-type": "application/json"}
        for name, value in kind.auth_headers(api_key).items():
            headers[name.lower()] = value
        for name, raw in provider.headers.items():
            revealed = _reveal(raw)
            if revealed:  # an empty value (``${ORG:-}`` unset) is not sent
                headers[name.lower()] = revealed
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        secrets = {_reveal(v) for v in (provider.api_key, provider.base_url,
                                        *provider.headers.values()) if isinstance(v, Secret)}
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    # -- requests -------------------------------------------------------------------------------

    def _target(self, model: str, stream: bool) -> tuple[httpx.URL, list[tuple[bytes, bytes]]]:
        key = (model, stream)
        hit = self._urls.get(key)
        if hit is None:
            url = httpx.URL(self.kind.url(self._base_url, model, stream))
            hit = (url, [(b"host", url.netloc), *self._headers])
            if len(self._urls) < _URL_CACHE_MAX:
                self._urls[key] = hit
        return hit

    def _request(self, model: str, stream: bool, body: bytes) -> httpx.Request:
        url, headers = self._target(model, stream)
        req = httpx.Request(
            "POST", url, stream=httpx.ByteStream(body), extensions=self._timeout,
            headers=httpx.Headers([*headers, (b"content-length", str(len(body)).encode())]),
        )
        req.read()  # sets .content so transports send a sized body, not a chunked one
        return req

    def _here(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._transport is not None:
            return self._transport
        if self._transport is None:
            self._loop = loop
            self._transport = self._factory(self.provider)
            return self._transport
        other = self._others.get(loop)
        if other is None:
            other = self._others[loop] = self._factory(self.provider)
        return other

    async def post(self, model: str, body: bytes) -> httpx.Response:
        """Send a chat request and read the whole answer; raise ``Fault`` below HTTP."""
        transport = self._here()
        request = self._request(model, False, body)
        try:
            response = await transport.handle_async_request(request)
        except Exception as exc:
            raise translate(exc) from None
        try:
            await response.aread()
        except Exception as exc:
            raise translate(exc) from None
        finally:
            await response.aclose()
        return response

    async def open_stream(self, model: str, body: bytes) -> httpx.Response:
        """Send a streaming chat request; the caller reads (``lines``) and closes the response."""
        transport = self._here()
        request = self._request(model, True, body)
        try:
            return await transport.handle_async_request(request)
        except Exception as exc:
            raise translate(exc) from None

    async def get(self, url: str) -> int:
        """A GET (warm-up: opens a pooled connection); returns the status."""
        transport = self._here()
        u = httpx.URL(url)
        request = httpx.Request("GET", u, extensions=self._timeout,
                                headers=httpx.Headers([(b"host", u.netloc), *self._headers]))
        try:
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except Exception as exc:
            raise translate(exc) from None
        return response.status_code

    def models_url(self) -> str:
        return self.kind.models_url(self._base_url)

    def scrub(self, text: str) -> str:
        """Mask every secret this provider was configured with (an error body may echo a key)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    async def aclose(self) -> None:
        """Close the transports this event loop can close (and ask other loops to close theirs)."""
        here = asyncio.get_running_loop()
        pending: list[tuple[asyncio.AbstractEventLoop | None, httpx.AsyncBaseTransport]] = []
        if self._transport is not None:
            pending.append((self._loop, self._transport))
        pending += list(self._others.items())
        self._transport, self._loop, self._others = None, None, {}
        for loop, transport in pending:
            if loop is here:
                await transport.aclose()
            elif loop is not None and not loop.is_closed() and loop.is_running():
                future = asyncio.run_coroutine_threadsafe(transport.aclose(), loop)
                await asyncio.wrap_future(future)

    def __repr__(self) -> str:
        return f"Connection({self.name!r})"


async def lines(response: httpx.Response) -> AsyncIterator[str]:
    """The decoded lines of a streaming body (``\\n`` or ``\\r\\n``); raises ``Fault``."""
    buffer = b""
    try:
        async for chunk in response.aiter_bytes():
            if buffer:
                chunk = buffer + chunk
            parts = chunk.split(b"\n")
            buffer = parts.pop()
            for part in parts:
                yield part.rstrip(b"\r").decode("utf-8")
    except Fault:
        raise
    except UnicodeDecodeError as exc:
        raise Fault("protocol", f"stream is not UTF-8: {exc.reason}") from None
    except Exception as exc:
        raise translate(exc) from None
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


def error_detail(response: httpx.Response, kind: Kind) -> str:
    """A short message from an error response's body."""
    try:
        data: Any = json.loads(response.content)
    except ValueError:
        return response.content[:200].decode("utf-8", "replace")
    try:
        return kind.error_message(data)
    except Exception:
        return str(data)[:200]


def translate(exc: BaseException) -> Fault:
    """Map an httpx, aiohttp or socket exception onto timeout / connect / reset / protocol.

    httpx-aiohttp re-raises aiohttp errors as httpx ones, some loosely (a refused connection
    becomes ``ConnectTimeout``), so the aiohttp cause is looked at first.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    name = type(cause).__name__
    if isinstance(cause, aiohttp.ClientError):
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return Fault("timeout", name)
        if isinstance(cause, aiohttp.ClientConnectorError):
            return Fault("connect", _os_reason(cause.os_error) or name)
        if isinstance(cause, aiohttp.ClientOSError):
            return Fault("reset", _os_reason(cause))
        if isinstance(cause, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return Fault("reset", name)
        if isinstance(cause, aiohttp.ClientResponseError):
            return Fault("protocol", f"{name}: {cause.message}"[:200])
        return Fault("reset", name)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Fault("timeout", name)
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return Fault("connect", name)
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "disconnect" in text or "closed" in text or "incomplete" in text:
            return Fault("reset", name)
        return Fault("protocol", name)
    if isinstance(exc, httpx.DecodingError | httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        return Fault("protocol", name)
    if isinstance(exc, httpx.TransportError | OSError):
        return Fault("reset", name)
    return Fault("protocol", name)


def _os_reason(err: OSError) -> str:
    """``Connection refused``: from the errno only (``strerror`` may name the address)."""
    return os.strerror(err.errno) if err.errno else type(err).__name__


class ConnectionPool:
    """Connections shared across routing graphs: a reloaded graph reuses the connection of every
    provider whose settings did not change."""

    def __init__(self, factory: TransportFactory) -> None:
        self.factory = factory
        self._by_print: dict[Hashable, Connection] = {}

    def acquire(self, provider: Provider, kind: Kind) -> Connection:
        key = fingerprint(provider)
        conn = self._by_print.get(key)
        if conn is None:
            conn = self._by_print[key] = Connection(provider, kind, self.factory)
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

    def connections(self) -> list[Connection]:
        return list(self._by_print.values())

    async def aclose(self) -> None:
        conns, self._by_print = list(self._by_print.values()), {}
        await asyncio.gather(*(c.aclose() for c in conns), return_exceptions=True)
