"""The gateway as a plain ASGI callable: one exchange in, the endpoint's handler run, every
failure answered as JSON in the endpoint's dialect.

The endpoint table maps a path to its dialect and its handler per method; the Anthropic entries
come from ``engine.gateway.anthropic`` (the dialect module adds its own endpoints). No framework
sits between uvicorn and the handlers: Starlette's request objects cost ~20 % of the throughput
measured in the issue, and a handler here needs only the headers, the body and ``send``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.gateway.dialect import Dialect
from engine.gateway.errors import Refusal
from engine.gateway.http import (
    Disconnected,
    Receive,
    Scope,
    Send,
    TooLarge,
    TooSlow,
    header_map,
    send_bytes,
)
from engine.gateway.jsonio import dumps
from engine.gateway.keys import Keyring, token_of
from engine.gateway.openai import OpenAIDialect
from engine.gateway.quota import Quota
from engine.graph import ClientKey, RoutingGraph, ServerConfig
from engine.telemetry.logs import REQUEST_ID, AccessLog

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = ["Call", "Endpoint", "Gateway", "Handler"]

_log = logging.getLogger("engine.gateway")
JSON = b"application/json"


@dataclass(slots=True)
class Call:
    """One exchange as a handler sees it."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    send: Send
    headers: dict[str, str]
    rid: str
    dialect: Dialect
    key: ClientKey | None = None

    async def reply(self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """A JSON answer (``body`` already bytes, or a value to encode)."""
        data = body if type(body) is bytes else dumps(body)
        out = [(b"x-request-id", self.rid.encode("latin-1"))]
        if headers:
            out += headers
        await send_bytes(self.send, status, data, JSON, out)

    async def refuse(self, r: Refusal) -> None:
        await self.reply(
            r.status, self.dialect.error(r.status, r.message, kind=r.kind, relayed=r.relayed), list(r.headers)
        )

    def authenticate(self, *, admin: bool = False) -> ClientKey | None:
        """The caller's key; ``Refusal(401)`` without a valid one (none needed on an open
        gateway, except for admin endpoints, which then need a key that is admin)."""
        ring = self.gateway.keyring
        key = ring.find(token_of(self.headers))
        if key is None and not (ring.open and not (admin and self.gateway.config.keys)):
            raise Refusal(401, "missing or unknown API key (send Authorization: Bearer KEY or x-api-key)")
        if admin and key is not None and not key.admin:
            raise Refusal(403, "this key may not call admin endpoints", kind="permission_error")
        self.key = key
        return key


Handler = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    dialect: Dialect
    methods: dict[str, Handler]


class Gateway:
    """The ASGI application over one ``Engine`` (``engine.graph.server`` configures it)."""

    def __init__(self, engine: Engine, *, on_reload: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.config: ServerConfig = engine.graph.server
        self.keyring = Keyring(self.config)
        self.quota = Quota(engine.graph)
        self.access = AccessLog(engine.graph.telemetry.log_format, engine.graph.telemetry.log_level)
        self.openai = OpenAIDialect()
        self.draining = False
        self.inflight = 0
        self.on_reload = on_reload  # told after a reload /admin/reload made (several workers)
        self.endpoints: dict[str, Endpoint] = {}
        self.prefixed: dict[str, Endpoint] = {}  # a path prefix's endpoint (``/v1/models/``)
        self._reloading = asyncio.Lock()
        self._ids = 0
        self._pid = f"{os.getpid():x}"
        from engine.gateway.routes import install

        install(self)

    # -- the graph ------------------------------------------------------------------------------

    def adopt(self, graph: RoutingGraph) -> None:
        """Use a newly compiled graph's server keys and limits (the engine swapped already)."""
        self.config = graph.server
        self.keyring = Keyring(graph.server)
        self.access = AccessLog(graph.telemetry.log_format, graph.telemetry.log_level)
        old = self.quota.use(graph)
        if old is not None:
            task = asyncio.ensure_future(old.aclose())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def reload(self, path: Path | None = None) -> RoutingGraph:
        """Compile the file again and swap atomically (``ConfigError``: the old graph stays)."""
        async with self._reloading:
            graph = await self.engine.areload(path)
            self.adopt(graph)
            _log.info("engine: reloaded %s", ", ".join(graph.sources) or "the graph")
            return graph

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        rid = headers.get("x-request-id") or self._next_id()
        path: str = scope["path"]
        endpoint = self.endpoint(path)
        dialect = endpoint.dialect if endpoint is not None else self._dialect_of(path)
        call = Call(self, scope, receive, send, headers, rid[:200], dialect)
        REQUEST_ID.set(call.rid)  # the engine's access line carries the client's id
        try:
            if endpoint is None:
                raise Refusal(404, f"unknown path {path}", kind="not_found_error")
            handler = endpoint.methods.get(scope["method"])
            if handler is None:
                allow = ", ".join(sorted(endpoint.methods)).encode()
                raise Refusal(
                    405, f"{scope['method']} is not allowed on {path}", headers=((b"allow", allow),)
                )
            self.inflight += 1
            try:
                await handler(call)
            finally:
                self.inflight -= 1
        except Refusal as r:
            await call.refuse(r)
            self._refused(call, path, r.status)
        except TooLarge as exc:
            await call.refuse(Refusal(413, str(exc)))
            self._refused(call, path, 413)
        except TooSlow as exc:  # (the rest of the body may still come: the connection closes)
            await call.refuse(Refusal(408, str(exc), headers=((b"connection", b"close"),)))
            self._refused(call, path, 408)
        except Disconnected:
            return
        except Exception:  # a bug: logged, and answered as JSON if nothing was sent yet
            _log.exception("engine: request %s failed", call.rid)
            with contextlib.suppress(Exception):
                await call.refuse(Refusal(500, "internal error in the gateway", kind="api_error"))

    def _refused(self, call: Call, path: str, status: int) -> None:
        """The access line of a request refused before it was routed (a routed one has the
        engine's own line); none for the health checks and metrics a load balancer polls."""
        if path.startswith(("/health", "/metrics")):
            return
        log = self.access
        if log.enabled():
            key = call.key.name if call.key is not None else None
            log.write(
                {
                    "request_id": call.rid,
                    "route": "none",
                    "outcome": "refused",
                    "status": status,
                    "target": key and f"key:{key}",
                }
            )

    def unparsed(self, target: bytes, status: int, message: str) -> tuple[bytes, bytes]:
        """The ``x-request-id`` and JSON body of the answer to a request refused before it was
        parsed whole (not valid HTTP: a bad content-length, a control character in a header, an
        unknown method; or a head too large), in the dialect of the path (``target``: what of it
        was read)."""
        path = target.partition(b"?")[0].decode("latin-1")
        endpoint = self.endpoint(path)
        dialect = endpoint.dialect if endpoint is not None else self._dialect_of(path)
        return self._next_id().encode(), dumps(dialect.error(status, message))

    def endpoint(self, path: str) -> Endpoint | None:
        """The endpoint of ``path``: its own (a trailing slash ignored), else a prefix's."""
        found = self.endpoints.get(path.rstrip("/") if len(path) > 1 else path)
        if found is not None:
            return found
        for prefix, endpoint in self.prefixed.items():
            if path.startswith(prefix):
                return endpoint
        return None

    def _dialect_of(self, path: str) -> Dialect:
        """The dialect of an unknown path's error: Anthropic's under /v1/messages."""
        if path.startswith("/v1/messages"):
            for name, endpoint in self.endpoints.items():
                if name.startswith("/v1/messages"):
                    return endpoint.dialect
        return self.openai

    def _next_id(self) -> str:
        self._ids += 1
        return f"req-{self._pid}-{self._ids:x}"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.aclose()
                await self.quota.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
