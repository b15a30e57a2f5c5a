"""HTTP requests in any of the four wire formats (and ``/_fake/*`` admin calls) go in; deterministic
answers, or the faults a directive or program asks for, come out, over real loopback HTTP.

``FakeServer`` runs inside a loop (``async with``), on its own thread (``with`` / ``run_in_thread``)
or, through ``engine.fake.main``, as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any

from aiohttp import web

from engine.fake.answer import BadRequest, Chat, answer
from engine.fake.faults import NO_FAULT, Fault, Program, Programs, parse
from engine.fake.stats import Stats
from engine.fake.wire import MALFORMED, Wire, dumps
from engine.fake.wires import DEFAULT_MODELS, KINDS, WIRES, route

__all__ = ["FakeServer"]


def _phrase(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase
    return "Overloaded" if status == 529 else "Error"


def _reset(request: web.BaseRequest) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), sending nothing more."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# each API's own words for a request its model's context window cannot hold
_TOO_LONG = {
    "openai": BadRequest(
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130412 tokens. Please reduce the length of the messages.",
        param="messages",
        code="context_length_exceeded",
    ),
    "anthropic": BadRequest("prompt is too long: 208310 tokens > 200000 maximum"),
    "gemini": BadRequest(
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    ),
    "ollama": BadRequest("the input length exceeds the context length"),
}


def _too_long(kind: str) -> BadRequest:
    return _TOO_LONG.get(kind, _TOO_LONG["openai"])


def _close(request: web.BaseRequest) -> None:
    """Close the connection after what was written is flushed (FIN, no terminator)."""
    if request.transport is not None:
        request.transport.close()


class FakeServer:
    """The fake provider. ``async with FakeServer() as srv`` or ``with FakeServer() as srv``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        require_key: str | None = None,
        models: Mapping[str, Sequence[str]] | None = None,
        chunk_delay: float = 0.0,
        log_size: int = 1000,
    ) -> None:
        self.host, self.port = host, port
        self.require_key = require_key
        self.models = {k: list(v) for k, v in {**DEFAULT_MODELS, **(models or {})}.items()}
        self.chunk_delay = chunk_delay
        self.programs = Programs()
        self._stats = Stats(log_size)
        self._ids = itertools.count(1)
        self._runner: web.BaseRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, kind: str, prefix: str = "") -> str:
        """The ``base_url`` an engine config should use for ``kind``; a ``prefix`` path segment
        gives several providers of one kind distinct paths (so programs can target each)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        root = self.url + ("/" + prefix.strip("/") if prefix.strip("/") else "")
        return root + WIRES[kind].base_path

    def program(
        self,
        kind_or_path: str | None = None,
        faults: Iterable[str | Fault] = (),
        *,
        rate: float | None = None,
        seed: int | None = None,
        model: str | None = None,
    ) -> None:
        """Queue ``faults`` (one per request; "ok" lets one through) or, with ``rate``, draw one of
        them at that rate from a ``seed``ed generator. Scope: None = every chat call, a kind =
        its chat calls, "/prefix" = any call whose path starts so; ``model`` narrows further."""
        self.programs.set(kind_or_path, Program(faults, rate, seed), model)

    def reset(self) -> None:
        """Forget every program, counter and logged request."""
        self.programs.clear()
        self._stats.reset()

    def stats(self, log: bool = True) -> dict[str, Any]:
        """Counts per path, kind, model and status, plus the request log (headers by name only)."""
        return self._stats.snapshot(log)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The logged requests, oldest first."""
        log: list[dict[str, Any]] = self._stats.snapshot()["log"]
        return log

    async def start(self) -> FakeServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.25)
        await self._runner.setup()
        try:
            await web.SockSite(self._runner, sock, backlog=1024).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run_in_thread(self, *, use_uvloop: bool = False) -> FakeServer:
        """Start serving on a new event loop in a daemon thread; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("this FakeServer already runs in a thread")
        started = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = _new_loop(use_uvloop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # e.g. the port is taken: report it to the caller
                failed.append(exc)
                loop.close()
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                # handlers still inside a slow answer past the shutdown timeout: end them here
                # (as asyncio.run does), not by closing the loop under them
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:  # (gather of nothing asks this thread for a current loop: none)
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"fake-provider-{id(self):x}", daemon=True)
        self._thread.start()
        started.wait(30)
        if failed:
            self._thread.join()
            self._thread = self._loop = None
            raise failed[0]
        return self

    def stop_thread(self) -> None:
        """Stop a server started by ``run_in_thread`` and wait for its thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = self._loop = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> FakeServer:
        return self.run_in_thread()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_thread()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_fake/"):
            return await self._admin(request)
        found = route(request.method, path, request.headers)
        if found is None:
            msg = f"fake provider: no route for {request.method} {path}"
            return web.json_response({"error": msg}, status=404)
        wire, op, path_model = found
        kind = wire.name
        entry = self._stats.record(request.method, path, kind, request.headers, request.query)
        header = request.headers.get("x-fake")
        fault, chat = NO_FAULT, None
        problem: BadRequest | None = None
        if header:
            try:
                fault = parse(header)
            except ValueError as exc:
                problem = BadRequest(f"bad x-fake header: {exc}")
        if op != "models":
            try:
                chat = self._chat(request, wire, op, path_model, await request.read(), entry)
            except BadRequest as exc:
                problem = problem or exc
            except ValueError as exc:  # not JSON, or not UTF-8
                problem = problem or BadRequest(f"could not parse the JSON body of your request: {exc}")
        model = chat.model if chat is not None else path_model
        self._stats.model(entry, model)
        fault = self.programs.next(kind, path, model, op != "models").merge(fault)
        if chat is not None and chat.marker:
            try:
                fault = fault.merge(parse(chat.marker))
            except ValueError as exc:
                problem = BadRequest(f"bad [[fake: ...]] marker: {exc}")
        entry["fault"] = fault.label
        return await self._respond(request, wire, op, fault, chat, problem, entry)

    def _chat(
        self,
        request: web.BaseRequest,
        wire: Wire,
        op: str,
        path_model: str | None,
        raw: bytes,
        entry: dict[str, Any],
    ) -> Chat:
        body = json.loads(raw)
        entry["body"] = body
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        chat = wire.parse_for(op, body, path_model)
        wire.streams(chat, op, request.query)
        entry["stream"] = chat.stream
        return chat

    def _json(
        self, entry: dict[str, Any], status: int, data: Any, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self._stats.done(entry, status)
        return web.Response(
            body=dumps(data).encode(), status=status, headers=headers, content_type="application/json"
        )

    async def _respond(
        self,
        request: web.BaseRequest,
        wire: Wire,
        op: str,
        fault: Fault,
        chat: Chat | None,
        problem: BadRequest | None,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        """Answer one request: the injected fault, a refusal, the model list or the reply."""
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.reset:
            self._stats.done(entry, "reset")
            _reset(request)
            return web.Response()
        rid = f"fake{next(self._ids):020d}"
        headers = _headers(wire, rid, fault)
        status = fault.status or 200
        if fault.too_long:
            refused = _too_long(wire.name)
            return self._json(entry, refused.status, wire.refuse(refused, rid), headers)
        if status >= 400:
            message = f"fake provider: {status} {_phrase(status)} (injected)"
            return self._json(entry, status, wire.error(status, message, rid), headers)
        refusal = self._refusal(wire, request, rid, headers, entry, op, chat, problem)
        if refusal is not None:
            return refusal
        if chat is None:
            return self._json(entry, 200, wire.models(self.models.get(wire.name, [])), headers)
        ans = answer(chat, fault)
        if chat.stream:
            return await self._stream(
                request, wire, chat, fault, wire.frames(chat, ans, rid), headers, entry, rid
            )
        body = MALFORMED if fault.malformed else dumps(wire.body(chat, ans, rid)).encode()
        return await self._whole(request, body, fault, headers, entry)

    def _refusal(
        self,
        wire: Wire,
        request: web.BaseRequest,
        rid: str,
        headers: dict[str, str],
        entry: dict[str, Any],
        op: str,
        chat: Chat | None,
        problem: BadRequest | None,
    ) -> web.Response | None:
        """The refusal of the key, else of the request, in the order the provider checks; None
        when the request is answered."""
        if wire.keyed:
            key = wire.key(request.headers, request.query)
            if not key or (self.require_key is not None and key != self.require_key):
                refused = wire.auth_failure(request.headers, not key)
                return self._json(entry, refused.status, wire.refuse(refused, rid), headers)
        problem = wire.check(request.headers) or problem
        if problem is None and chat is None and op != "models":
            problem = BadRequest("bad request")
        if problem is not None:
            return self._json(entry, problem.status, wire.refuse(problem, rid), headers)
        return None

    async def _whole(
        self,
        request: web.BaseRequest,
        body: bytes,
        fault: Fault,
        headers: dict[str, str],
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        """A non-streamed reply; with ``truncate``, half of it and the connection closed."""
        if not fault.truncate:
            self._stats.done(entry, 200)
            return web.Response(body=body, headers=headers, content_type="application/json")
        resp = web.StreamResponse(
            headers={**headers, "Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        self._stats.done(entry, "truncated")
        _close(request)
        return resp

    async def _stream(
        self,
        request: web.BaseRequest,
        wire: Wire,
        chat: Chat,
        fault: Fault,
        frames: list[bytes],
        headers: dict[str, str],
        entry: dict[str, Any],
        rid: str,
    ) -> web.StreamResponse:
        drop = False
        if fault.malformed:
            frames.insert(min(1, len(frames)), wire.malformed_frame())
        if fault.stream_error:
            keep = fault.die_after if fault.die_after is not None else (len(frames) - 1) // 2
            frames = [*frames[: max(1, keep)], wire.error_frame("Overloaded (injected)", rid)]
        elif fault.die_after is not None:
            frames, drop = frames[: min(fault.die_after, len(frames) - 1)], True
        elif fault.truncate:
            half = len(frames) // 2
            frames, drop = [*frames[:half], frames[half][: len(frames[half]) // 2]], True
        resp = web.StreamResponse(
            headers={**headers, "Content-Type": wire.stream_type(chat), "Cache-Control": "no-cache"}
        )
        delay = self.chunk_delay if fault.chunk_delay is None else fault.chunk_delay
        try:
            await resp.prepare(request)
            if delay > 0:
                for i, frame in enumerate(frames):
                    if i:
                        await asyncio.sleep(delay)
                    await resp.write(frame)
            elif frames:
                await resp.write(b"".join(frames))
        except ConnectionResetError:  # the client went away (a hedge loser, a deadline): fine
            self._stats.done(entry, "client_closed")
            return resp
        if drop:
            self._stats.done(entry, "dropped")
            _close(request)
            return resp
        self._stats.done(entry, 200)  # before the last chunk: a client may ask for stats on it
        await resp.write_eof()
        return resp

    async def _admin(self, request: web.BaseRequest) -> web.StreamResponse:
        what = request.path.removeprefix("/_fake/")
        if request.method == "GET" and what == "stats":
            return web.json_response(self.stats(request.query.get("log") != "0"))
        if request.method == "GET" and what == "health":
            return web.json_response({"ok": True})
        if request.method == "POST" and what == "reset":
            self.reset()
            return web.json_response({"ok": True})
        if request.method == "POST" and what == "program":
            try:
                spec = json.loads(await request.read() or b"{}")
                if isinstance(spec, list):
                    spec = {"faults": spec}
                self.program(
                    spec.get("scope", spec.get("kind", spec.get("path"))),
                    spec.get("faults", ()),
                    rate=spec.get("rate"),
                    seed=spec.get("seed"),
                    model=spec.get("model"),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                return web.json_response({"error": f"bad program: {exc}"}, status=400)
            return web.json_response({"ok": True})
        return web.json_response({"error": f"no admin call {request.method} /_fake/{what}"}, status=404)


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _headers(wire: Wire, rid: str, fault: Fault) -> dict[str, str]:
    """The response headers: the wire's own for ``rid`` and any injected retry hints."""
    headers = wire.headers(rid)
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = fault.retry_after_ms
    return headers
