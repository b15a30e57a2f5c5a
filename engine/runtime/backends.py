"""A prepared URL, headers and a body in, HTTP replies out: the two HTTP backends (aiohttp directly,
or any ``httpx.AsyncBaseTransport``), and the one place their exceptions become our error kinds.

The default backend drives an ``aiohttp.ClientSession`` with a URL, header map and timeout built once
per provider: measured against one loopback nginx, that is raw-aiohttp speed, while the same call
through ``httpx.AsyncClient`` over httpx-aiohttp's transport costs ~200 us more and straight through
that transport (prebuilt ``httpx.Request``) still ~60-100 us more. ``"httpx"``, ``"httpx-aiohttp"``
and a caller's own ``httpx`` transport go through ``HttpxBackend`` (prebuilt requests straight to
the transport; no ``AsyncClient``, whose auth, redirect and cookie machinery the engine never uses).
"""

from __future__ import annotations

import functools
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDict
from yarl import URL

from engine.graph import Provider
from engine.providers.base import ERROR_TEXT_MAX, Kind, loads

__all__ = [
    "AiohttpBackend",
    "Backend",
    "BackendFactory",
    "Fault",
    "HttpxBackend",
    "Reply",
    "Streamed",
    "TransportOption",
    "error_detail",
    "line_batches",
    "resolve_backend",
    "translate",
]

TransportOption = str | Callable[[Provider], httpx.AsyncBaseTransport] | None
HeaderList = list[tuple[str, str]]


class Fault(Exception):
    """A try that failed below HTTP: ``kind`` is timeout, connect, reset or protocol; ``detail``
    never contains a URL, header or secret."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Reply:
    """A whole answer: status, headers (case-insensitive), body (decoded from gzip)."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class Streamed(ABC):
    """An answer being streamed: status and headers are here, the body is read or iterated."""

    status: int
    headers: Mapping[str, str]

    @abstractmethod
    async def read(self) -> bytes: ...

    @abstractmethod
    def chunks(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def close(self) -> None:
        """Give the connection back (or drop it if the body was not read to the end)."""


class Backend(ABC):
    """One provider's pooled HTTP on one event loop."""

    @staticmethod
    @abstractmethod
    def prepare(url: str, headers: HeaderList) -> Any:
        """The form of a URL and its headers this backend sends fastest (built once, cached)."""

    @abstractmethod
    async def post(self, target: Any, body: bytes) -> Reply: ...

    @abstractmethod
    async def open(self, target: Any, body: bytes) -> Streamed: ...

    @abstractmethod
    async def get(self, target: Any) -> Reply:
        """GET and read the whole answer (model listings, warm-up)."""

    @abstractmethod
    async def aclose(self) -> None: ...


BackendFactory = Callable[[Provider], Backend]


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every backend (loading the CA bundle costs ~20 ms)."""
    return httpx.create_ssl_context()


# -- aiohttp ------------------------------------------------------------------------------------


class AiohttpBackend(Backend):
    """An ``aiohttp.ClientSession`` per provider (created on first use, in the running loop)."""

    def __init__(self, provider: Provider) -> None:
        s, pool = provider.speed, provider.pool
        self._timeout = aiohttp.ClientTimeout(total=None, connect=s.pool + s.connect,
                                              sock_connect=s.connect, sock_read=s.read)
        self._limit = pool.max_connections
        self._keepalive = pool.keepalive_expiry
        self.session: aiohttp.ClientSession | None = None

    @staticmethod
    def prepare(url: str, headers: HeaderList) -> tuple[URL, CIMultiDict[str]]:
        return URL(url), CIMultiDict(headers)

    def _session(self) -> aiohttp.ClientSession:
        session = self.session
        if session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive,
                                             ssl=_tls())
            session = self.session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False)
        return session

    async def post(self, target: tuple[URL, CIMultiDict[str]], body: bytes) -> Reply:
        session = self.session or self._session()
        try:
            async with session.post(target[0], data=body, headers=target[1],
                                    allow_redirects=False) as response:
                content = await response.read()
                return Reply(response.status, response.headers, content)
        except Exception as exc:
            raise translate(exc) from None

    async def open(self, target: tuple[URL, CIMultiDict[str]], body: bytes) -> Streamed:
        session = self.session or self._session()
        try:
            response = await session.post(target[0], data=body, headers=target[1],
                                          allow_redirects=False)
        except Exception as exc:
            raise translate(exc) from None
        return _AiohttpStreamed(response)

    async def get(self, target: tuple[URL, CIMultiDict[str]]) -> Reply:
        session = self.session or self._session()
        try:
            async with session.get(target[0], headers=target[1], allow_redirects=False) as r:
                content = await r.read()
                return Reply(r.status, r.headers, content)
        except Exception as exc:
            raise translate(exc) from None

    async def aclose(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    def in_use(self) -> int:
        """Connections checked out of the pool right now (for tests and diagnostics)."""
        if self.session is None:
            return 0
        acquired = getattr(self.session.connector, "_acquired", ())
        return len(acquired)


class _AiohttpStreamed(Streamed):
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except Exception as exc:
            raise translate(exc) from None

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def close(self) -> None:
        self._response.release()


# -- httpx --------------------------------------------------------------------------------------


def _httpx_limits(provider: Provider) -> httpx.Limits:
    pool = provider.pool
    return httpx.Limits(max_connections=pool.max_connections,
                        max_keepalive_connections=pool.max_keepalive,
                        keepalive_expiry=pool.keepalive_expiry)


class HttpxBackend(Backend):
    """Any ``httpx.AsyncBaseTransport``, fed prebuilt ``httpx.Request`` objects."""

    def __init__(self, provider: Provider, transport: httpx.AsyncBaseTransport) -> None:
        s = provider.speed
        self._ext = {"timeout": {"connect": s.connect, "read": s.read, "write": s.read,
                                 "pool": s.pool}}
        self.transport = transport

    @staticmethod
    def prepare(url: str, headers: HeaderList) -> tuple[httpx.URL, list[tuple[bytes, bytes]]]:
        u = httpx.URL(url)
        return u, [(b"host", u.netloc),
                   *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)]

    def _request(self, method: str, target: tuple[httpx.URL, list[tuple[bytes, bytes]]],
                 body: bytes | None) -> httpx.Request:
        url, headers = target
        if body is None:
            return httpx.Request(method, url, headers=httpx.Headers(headers),
                                 extensions=self._ext)
        request = httpx.Request(
            method, url, stream=httpx.ByteStream(body), extensions=self._ext,
            headers=httpx.Headers([*headers, (b"content-length", str(len(body)).encode())]))
        request.read()  # sets .content so transports send a sized body, not a chunked one
        return request

    async def post(self, target: Any, body: bytes) -> Reply:
        response = await self._send(self._request("POST", target, body))
        try:
            await response.aread()
        except Exception as exc:
            raise translate(exc) from None
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, response.content)

    async def open(self, target: Any, body: bytes) -> Streamed:
        return _HttpxStreamed(await self._send(self._request("POST", target, body)))

    async def get(self, target: Any) -> Reply:
        response = await self._send(self._request("GET", target, None))
        try:
            await response.aread()
        except Exception as exc:
            raise translate(exc) from None
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, response.content)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.transport.handle_async_request(request)
        except Exception as exc:
            raise translate(exc) from None

    async def aclose(self) -> None:
        await self.transport.aclose()

    def in_use(self) -> int:
        pool = getattr(self.transport, "_pool", None)  # httpx's own transport
        if pool is not None:
            return sum(not c.is_idle() for c in pool.connections)
        client = getattr(self.transport, "client", None)  # httpx-aiohttp's
        return len(getattr(getattr(client, "connector", None), "_acquired", ()))


class _HttpxStreamed(Streamed):
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except Exception as exc:
            raise translate(exc) from None

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def close(self) -> None:
        await self._response.aclose()


# -- choosing -----------------------------------------------------------------------------------

_NAMED: Final[dict[str, BackendFactory]] = {
    "aiohttp": AiohttpBackend,
    "httpx": lambda p: HttpxBackend(p, httpx.AsyncHTTPTransport(
        verify=_tls(), limits=_httpx_limits(p), trust_env=False)),
    "httpx-aiohttp": lambda p: HttpxBackend(p, AiohttpTransport(
        verify=_tls(), limits=_httpx_limits(p), trust_env=False)),
}


def resolve_backend(option: TransportOption) -> tuple[BackendFactory, Callable[..., Any]]:
    """The backend factory and its ``prepare`` for a ``transport=`` option: ``None``/``"aiohttp"``
    (default, fastest measured), ``"httpx"`` (httpx's own pool), ``"httpx-aiohttp"``, or a callable
    ``(provider) -> httpx.AsyncBaseTransport`` of the caller's."""
    if option is None:
        option = "aiohttp"
    if isinstance(option, str):
        try:
            factory = _NAMED[option]
        except KeyError:
            raise ValueError(f"unknown transport {option!r}; expected 'aiohttp', 'httpx', "
                             "'httpx-aiohttp' or a callable returning an "
                             "httpx.AsyncBaseTransport") from None
        return factory, AiohttpBackend.prepare if option == "aiohttp" else HttpxBackend.prepare
    make = option
    return (lambda p: HttpxBackend(p, make(p))), HttpxBackend.prepare


# -- bodies and errors --------------------------------------------------------------------------


async def line_batches(response: Streamed) -> AsyncIterator[list[str]]:
    """The decoded lines of a streaming body (``\\n`` or ``\\r\\n``), as many as each network
    read completed, in one list per read (never empty); raises ``Fault``."""
    buffer = b""
    try:
        async for chunk in response.chunks():
            if buffer:
                chunk = buffer + chunk
            complete, newline, buffer = chunk.rpartition(b"\n")
            if not newline:  # no line completed yet: all of it is in ``buffer``
                continue
            text = complete.decode("utf-8")
            batch = text.split("\n")
            if "\r" in text:
                batch = [line.rstrip("\r") for line in batch]
            yield batch
    except Fault:
        raise
    except UnicodeDecodeError as exc:
        raise Fault("protocol", f"stream is not UTF-8: {exc.reason}") from None
    except Exception as exc:
        raise translate(exc) from None
    if buffer:
        yield [buffer.rstrip(b"\r").decode("utf-8", "replace")]


def error_detail(content: bytes, kind: Kind) -> str:
    """The message of an error response's body, cut at ``ERROR_TEXT_MAX`` (the caller masks
    secrets in it, then cuts it short)."""
    try:
        data: Any = loads(content)
    except ValueError:
        return content[:ERROR_TEXT_MAX].decode("utf-8", "replace")
    try:
        return kind.error_message(data)[:ERROR_TEXT_MAX]
    except Exception:
        return str(data)[:ERROR_TEXT_MAX]


def translate(exc: BaseException) -> Fault:
    """Map an aiohttp, httpx or socket exception onto timeout / connect / reset / protocol.

    httpx-aiohttp re-raises aiohttp errors as httpx ones, some loosely (a refused connection
    becomes ``ConnectTimeout``), so an aiohttp cause is looked at first.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    name = type(cause).__name__
    if isinstance(cause, aiohttp.ClientError):
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return Fault("timeout", name)
        if isinstance(cause, aiohttp.ClientConnectorError):
            return Fault("connect", _os_reason(cause.os_error))
        if isinstance(cause, aiohttp.ClientOSError):
            return Fault("reset", _os_reason(cause))
        if isinstance(cause, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return Fault("reset", name)
        if isinstance(cause, aiohttp.ClientResponseError):
            return Fault("protocol", f"{name}: {cause.message}"[:ERROR_TEXT_MAX])
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
