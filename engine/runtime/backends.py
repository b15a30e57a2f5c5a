"""A prepared URL, headers and a body in, HTTP replies out: the two HTTP backends (aiohttp directly,
or any ``httpx.AsyncBaseTransport``), and the one place their exceptions become our error kinds.

The default backend drives an ``aiohttp.ClientSession`` with a URL, header map and timeout built once
per provider: measured against one loopback nginx, that is raw-aiohttp speed, while the same call
through ``httpx.AsyncClient`` over httpx-aiohttp's transport costs ~200 us more and straight through
that transport (prebuilt ``httpx.Request``) still ~60-100 us more. ``"httpx-aiohttp"`` and a
caller's own ``httpx`` transport go through ``HttpxBackend`` (prebuilt requests straight to the
transport; no ``AsyncClient``, whose auth, redirect and cookie machinery the engine never uses).

Both built-in transports pool connections in ``_Connector``, which never hands out a kept-alive
connection that received bytes while idle. httpx's own pool (``transport="httpx"``) was removed:
an upstream that sends an answer twice made the copy the next caller's answer there, and under
1,000 concurrent requests it failed every one, blocked the loop for seconds and overran deadlines.

aiohttp, httpx and httpx-aiohttp through their public APIs only: ``TCPConnector.connect`` (the
one method ``_Connector`` overrides), ``Connection.protocol``/``add_callback``, the transports'
``handle_async_request``; httpx-aiohttp's transport gets its session from our factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import zlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDict
from yarl import URL

from engine.graph import Provider
from engine.providers.base import ERROR_TEXT_MAX, Kind, loads
from engine.result import ErrorKind
from engine.values import format_size

__all__ = [
    "ERROR_BODY_MAX",
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

_STEP: Final = 256 * 1024  # bytes inflated at a time; other tasks run between steps
ERROR_BODY_MAX: Final = 64 * 1024  # of an error answer this much is read (its message is short)


class Fault(Exception):
    """A try that failed below HTTP: ``kind`` is timeout, connect, reset or protocol; ``detail``
    never contains a URL, header or secret."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Reply:
    """A whole answer: status, headers (case-insensitive), body (decompressed; of an error
    answer at most ``ERROR_BODY_MAX`` bytes)."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class Streamed(ABC):
    """An answer being streamed: status and headers are here, the body is read or iterated,
    decompressed and bounded by the provider's ``max_response`` (else ``Fault``)."""

    status: int
    headers: Mapping[str, str]

    @abstractmethod
    async def read(self) -> bytes:
        """The whole body (of an error answer at most ``ERROR_BODY_MAX`` bytes); raises ``Fault``."""

    @abstractmethod
    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, decompressed; raises ``Fault``."""

    @abstractmethod
    async def close(self) -> None:
        """Give the connection back if the body was read to the end, else drop it."""


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
    """An ``aiohttp.ClientSession`` per provider (created on first use, in the running loop).
    Its automatic decompression is off: bodies are inflated here, in bounded steps. It keeps no
    cookies: a ``Set-Cookie`` in one caller's answer is never sent with another caller's request."""

    def __init__(self, provider: Provider) -> None:
        s, pool = provider.speed, provider.pool
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=s.pool + s.connect, sock_connect=s.connect, sock_read=s.read
        )
        self._limit = pool.max_connections
        self._keepalive = pool.keepalive_expiry
        self._max = provider.max_response
        self.session: aiohttp.ClientSession | None = None

    @staticmethod
    def prepare(url: str, headers: HeaderList) -> tuple[URL, CIMultiDict[str]]:
        return URL(url), CIMultiDict(headers)

    def _session(self) -> aiohttp.ClientSession:
        session = self.session
        if session is None:
            connector = _Connector(limit=self._limit, keepalive_timeout=self._keepalive, ssl=_tls())
            session = self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def post(self, target: tuple[URL, CIMultiDict[str]], body: bytes) -> Reply:
        session = self.session or self._session()
        try:
            async with session.post(
                target[0], data=body, headers=target[1], allow_redirects=False
            ) as response:
                return Reply(response.status, response.headers, await _aiohttp_whole(response, self._max))
        except Fault:
            raise
        except Exception as exc:
            raise translate(exc) from None

    async def open(self, target: tuple[URL, CIMultiDict[str]], body: bytes) -> Streamed:
        session = self.session or self._session()
        try:
            response = await session.post(target[0], data=body, headers=target[1], allow_redirects=False)
        except Exception as exc:
            raise translate(exc) from None
        return _AiohttpStreamed(response, self._max)

    async def get(self, target: tuple[URL, CIMultiDict[str]]) -> Reply:
        session = self.session or self._session()
        try:
            async with session.get(target[0], headers=target[1], allow_redirects=False) as r:
                return Reply(r.status, r.headers, await _aiohttp_whole(r, self._max))
        except Fault:
            raise
        except Exception as exc:
            raise translate(exc) from None

    async def aclose(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    def in_use(self) -> int:
        """Connections checked out of the pool right now (for tests and diagnostics)."""
        connector = self.session.connector if self.session is not None else None
        return connector.in_use if isinstance(connector, _Connector) else 0


class _Connector(aiohttp.TCPConnector):
    """aiohttp's pool, except that a kept-alive connection holding bytes nobody asked for (an
    upstream that sent an answer twice, the copy arriving while the connection was idle) is
    closed instead of reused: aiohttp would hand the copy to the next request as its answer.

    ``in_use`` counts the connections handed out and not yet given back, through aiohttp's
    public ``Connection.add_callback`` (called once, on release or close): the pool's own
    bookkeeping is private."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.in_use = 0

    async def connect(self, req: Any, traces: Any, timeout: Any) -> aiohttp.connector.Connection:
        while True:
            conn = await super().connect(req, traces, timeout)
            proto = conn.protocol
            if proto is None or not proto.should_close:  # unread data, a parse error, ...
                self.in_use += 1
                conn.add_callback(self._given_back)
                return conn
            conn.close()

    def _given_back(self) -> None:
        self.in_use -= 1


async def _aiohttp_whole(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of ``response``, decompressed, at most ``limit`` bytes (an error answer's
    cut at ``ERROR_BODY_MAX``); a response not read to its end is closed, not reused."""
    status, headers = response.status, response.headers
    cut = not 200 <= status < 300
    if cut:
        limit = min(limit, ERROR_BODY_MAX)
    length = response.content_length
    if length is not None and length <= limit and "content-encoding" not in headers:
        return await response.read()  # the common case: sized, plain, small enough
    try:
        content = await _collect(_decoded(response.content.iter_any(), headers, limit, cut))
    except BaseException:
        response.close()
        raise
    if not response.content.is_eof():  # an error answer cut short
        response.close()
    return content


class _AiohttpStreamed(Streamed):
    __slots__ = ("_limit", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await _aiohttp_whole(self._response, self._limit)
        except Fault:
            raise
        except Exception as exc:
            raise translate(exc) from None

    def chunks(self) -> AsyncGenerator[bytes, None]:
        return _decoded(self._response.content.iter_any(), self.headers, self._limit, False)

    async def close(self) -> None:
        response = self._response
        if response.content.is_eof():
            response.release()
        else:  # stopped early (the end marker came before the body's end, or an error)
            response.close()


# -- httpx --------------------------------------------------------------------------------------


def _httpx_limits(provider: Provider) -> httpx.Limits:
    pool = provider.pool
    return httpx.Limits(
        max_connections=pool.max_connections,
        max_keepalive_connections=pool.max_keepalive,
        keepalive_expiry=pool.keepalive_expiry,
    )


class HttpxBackend(Backend):
    """Any ``httpx.AsyncBaseTransport``, fed prebuilt ``httpx.Request`` objects; bodies are read
    raw and inflated here, in bounded steps."""

    def __init__(self, provider: Provider, transport: httpx.AsyncBaseTransport) -> None:
        s = provider.speed
        self._ext = {"timeout": {"connect": s.connect, "read": s.read, "write": s.read, "pool": s.pool}}
        self._max = provider.max_response
        self.transport = transport
        self.pool: _Connector | None = None  # set by the transport's session factory, if ours

    @staticmethod
    def prepare(url: str, headers: HeaderList) -> tuple[httpx.URL, list[tuple[bytes, bytes]]]:
        u = httpx.URL(url)
        return u, [(b"host", u.netloc), *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)]

    def _request(
        self, method: str, target: tuple[httpx.URL, list[tuple[bytes, bytes]]], body: bytes | None
    ) -> httpx.Request:
        url, headers = target
        if body is None:
            return httpx.Request(method, url, headers=httpx.Headers(headers), extensions=self._ext)
        request = httpx.Request(
            method,
            url,
            stream=httpx.ByteStream(body),
            extensions=self._ext,
            headers=httpx.Headers([*headers, (b"content-length", str(len(body)).encode())]),
        )
        request.read()  # sets .content so transports send a sized body, not a chunked one
        return request

    async def post(self, target: Any, body: bytes) -> Reply:
        response = await self._send(self._request("POST", target, body))
        return Reply(response.status_code, response.headers, await _httpx_whole(response, self._max))

    async def open(self, target: Any, body: bytes) -> Streamed:
        return _HttpxStreamed(await self._send(self._request("POST", target, body)), self._max)

    async def get(self, target: Any) -> Reply:
        response = await self._send(self._request("GET", target, None))
        return Reply(response.status_code, response.headers, await _httpx_whole(response, self._max))

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.transport.handle_async_request(request)
        except Exception as exc:
            raise translate(exc) from None

    async def aclose(self) -> None:
        await self.transport.aclose()

    def in_use(self) -> int:
        """Connections checked out of the pool right now: known when the pool is ours
        (``httpx-aiohttp``), else 0 (a caller's transport keeps its own count)."""
        return self.pool.in_use if self.pool is not None else 0


async def _httpx_whole(response: httpx.Response, limit: int) -> bytes:
    """The whole body, decompressed and bounded as ``_aiohttp_whole``'s; the response is closed."""
    cut = not 200 <= response.status_code < 300
    if cut:
        limit = min(limit, ERROR_BODY_MAX)
    try:
        return await _collect(_httpx_body(response, limit, cut))
    finally:
        try:
            await response.aclose()
        except Exception as exc:
            raise translate(exc) from None


class _HttpxStreamed(Streamed):
    __slots__ = ("_limit", "_response", "headers", "status")

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.status = response.status_code
        self.headers = response.headers

    async def read(self) -> bytes:
        return await _httpx_whole(self._response, self._limit)

    def chunks(self) -> AsyncGenerator[bytes, None]:
        return _httpx_body(self._response, self._limit, False)

    async def close(self) -> None:
        await self._response.aclose()


def _httpx_body(response: httpx.Response, limit: int, cut: bool) -> AsyncGenerator[bytes, None]:
    """The body read raw and inflated here; a response its transport built from bytes in memory
    (``httpx.MockTransport``) has been read and decoded by httpx already: bounded all the same."""
    if response.is_stream_consumed:
        try:
            content = response.content
        except httpx.ResponseNotRead:
            pass
        else:
            return _decoded(_one(content), {}, limit, cut)
    return _decoded(response.aiter_raw(), response.headers, limit, cut)


async def _one(content: bytes) -> AsyncGenerator[bytes, None]:
    yield content


# -- bodies: decompressed in bounded steps, never past max_response ------------------------------


def too_large(limit: int) -> Fault:
    return Fault("protocol", f"response larger than max_response ({format_size(limit)})")


class _Inflate:
    """A gzip or deflate body, inflated at most ``_STEP`` bytes at a time with the event loop
    free between steps; data after the end of the compressed stream is ignored (as aiohttp and
    httpx do)."""

    __slots__ = ("_d", "_encoding", "_fed")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding != "deflate" else None
        self._fed = False

    async def pieces(self, data: bytes) -> AsyncGenerator[bytes, None]:
        """``data`` inflated, ``_STEP`` bytes at most per piece, the loop free between pieces
        (a consumer that has seen enough stops early). Raises ``Fault`` for a body that is not
        what its encoding says."""
        d = self._d
        if d is None:  # deflate: zlib-wrapped (RFC 9110) or, as some servers send it, raw
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            d = self._d = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        self._fed = self._fed or bool(data)
        while not d.eof:
            try:
                piece = d.decompress(data, _STEP)
            except zlib.error as exc:
                raise Fault("protocol", f"body is not valid {self._encoding}: {exc}"[:200]) from None
            if piece:
                yield piece
            data = d.unconsumed_tail
            if not data and len(piece) < _STEP:
                return  # every byte given inflated
            await asyncio.sleep(0)  # a big one: let the deadline and other requests run

    def end(self) -> None:
        d = self._d
        if self._fed and d is not None and not d.eof:
            raise Fault("protocol", f"{self._encoding} body ended before its end")


def _inflater(headers: Mapping[str, str]) -> _Inflate | None:
    encoding = headers.get("content-encoding")
    if encoding is None:
        return None
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflate("gzip" if encoding == "x-gzip" else encoding)
    raise Fault("protocol", f"unsupported content-encoding {encoding[:40]!r}")


async def _decoded(
    raw: AsyncIterator[bytes], headers: Mapping[str, str], limit: int, cut: bool
) -> AsyncGenerator[bytes, None]:
    """The bytes of a body as sent (decompressed), never more than ``limit`` of them, raw or
    inflated: past it a ``Fault`` (``too_large``), or with ``cut`` the end of the body. A
    ``Content-Length`` over the limit fails before anything is read. Raises only ``Fault``."""
    length = headers.get("content-length")
    if not cut and length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    inflate = _inflater(headers)
    received = size = 0
    try:
        async for chunk in raw:
            received += len(chunk)
            if received > limit:
                if not cut:
                    raise too_large(limit)
                return
            if inflate is None:
                size += len(chunk)
                if size > limit:
                    if not cut:
                        raise too_large(limit)
                    yield chunk[: len(chunk) - (size - limit)]
                    return
                if chunk:
                    yield chunk
                continue
            async with contextlib.aclosing(inflate.pieces(chunk)) as pieces:
                async for piece in pieces:
                    size += len(piece)
                    if size > limit:
                        if not cut:
                            raise too_large(limit)
                        yield piece[: len(piece) - (size - limit)]
                        return
                    yield piece
    except Fault:
        raise
    except Exception as exc:
        raise translate(exc) from None
    if inflate is not None:
        inflate.end()


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    parts = [chunk async for chunk in chunks]
    return parts[0] if len(parts) == 1 else b"".join(parts)


# -- choosing -----------------------------------------------------------------------------------


def _httpx_aiohttp(provider: Provider) -> HttpxBackend:
    """httpx over httpx-aiohttp's transport, on a session of our ``_Connector`` (the backend
    keeps it, for ``in_use``)."""
    limits = _httpx_limits(provider)

    def session() -> aiohttp.ClientSession:  # called by the transport in the running loop
        backend.pool = _Connector(
            limit=provider.pool.max_connections, keepalive_timeout=limits.keepalive_expiry, ssl=_tls()
        )
        return aiohttp.ClientSession(
            connector=backend.pool, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    backend = HttpxBackend(
        provider, AiohttpTransport(verify=_tls(), limits=limits, trust_env=False, client=session)
    )
    return backend


_NAMED: Final[dict[str, BackendFactory]] = {
    "aiohttp": AiohttpBackend,
    "httpx-aiohttp": _httpx_aiohttp,
}
_REMOVED: Final = {
    "httpx": "transport='httpx' (httpx's own connection pool) was removed: an upstream that sends "
    "an answer twice on a keep-alive connection made the copy the next caller's answer, "
    "and under load it blocked the event loop and overran deadlines. Use the default "
    "('aiohttp'), 'httpx-aiohttp', or a callable returning an httpx.AsyncBaseTransport",
}


def resolve_backend(option: TransportOption) -> tuple[BackendFactory, Callable[..., Any]]:
    """The backend factory and its ``prepare`` for a ``transport=`` option: ``None``/``"aiohttp"``
    (default, fastest measured), ``"httpx-aiohttp"``, or a callable
    ``(provider) -> httpx.AsyncBaseTransport`` of the caller's. ``"httpx"`` raises
    ``ValueError`` saying why it was removed."""
    if option is None:
        option = "aiohttp"
    if isinstance(option, str):
        if option in _REMOVED:
            raise ValueError(_REMOVED[option])
        try:
            factory = _NAMED[option]
        except KeyError:
            raise ValueError(
                f"unknown transport {option!r}; expected 'aiohttp', "
                "'httpx-aiohttp' or a callable returning an "
                "httpx.AsyncBaseTransport"
            ) from None
        return factory, AiohttpBackend.prepare if option == "aiohttp" else HttpxBackend.prepare
    make = option
    return (lambda p: HttpxBackend(p, make(p))), HttpxBackend.prepare


# -- bodies and errors --------------------------------------------------------------------------


async def line_batches(response: Streamed) -> AsyncGenerator[list[str], None]:
    """The decoded lines of a streaming body, as many as each network read completed, in one
    list per read (never empty); raises ``Fault``. A line ends in ``\\r\\n``, ``\\n`` or a
    bare ``\\r`` (SSE allows all three), also when a ``\\r`` ends one read and its ``\\n``
    starts the next (one line end, not two)."""
    buffer = b""  # the start of a line not ended yet
    long: list[bytes] = []  # reads of a line that goes on (joined once, when it ends)
    after_cr = False  # the last read ended in \r: a \n starting this one belongs to it
    chunks = response.chunks()
    try:
        async for chunk in chunks:
            if after_cr and chunk:
                after_cr = False
                if chunk[0] == 0x0A:
                    chunk = chunk[1:]
            if b"\n" not in chunk and b"\r" not in chunk:  # no line ends here
                if chunk:
                    long.append(chunk)
                continue
            if long:
                chunk = b"".join([buffer, *long, chunk])
                long.clear()
            elif buffer:
                chunk = buffer + chunk
            if b"\r" not in chunk:  # the common case: \n only
                complete, newline, buffer = chunk.rpartition(b"\n")
                if newline:  # else no line completed yet: all of it is in ``buffer``
                    yield complete.decode("utf-8").split("\n")
                continue
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))  # the last line end
            buffer = chunk[end + 1 :]
            if chunk[end] == 0x0D:  # a \r last: its \n, if it has one, starts the next read
                after_cr = True
                complete = chunk[:end]
            else:
                complete = chunk[: end - 1] if end and chunk[end - 1] == 0x0D else chunk[:end]
            text = complete.decode("utf-8")
            yield text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    except Fault:
        raise
    except UnicodeDecodeError as exc:
        raise Fault("protocol", f"stream is not UTF-8: {exc.reason}") from None
    except Exception as exc:
        raise translate(exc) from None
    finally:
        await chunks.aclose()
    if buffer or long:
        yield [b"".join([buffer, *long]).decode("utf-8", "replace")]


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
