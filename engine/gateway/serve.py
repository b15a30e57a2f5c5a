"""``engine serve [FILE] [--profile P] [--listen HOST:PORT] [--workers N] [--watch]``: the
gateway on uvicorn (httptools parser, uvloop loop), one process or several.

Why uvicorn: measured in issue 11 on one core at c=50, a plain ASGI callable on uvicorn with
uvloop and httptools did 7,224 req/s (8,864 with orjson), granian 6,857, aiohttp.web 6,336,
Starlette's objects on uvicorn 5,977 (a raw asyncio protocol, the floor: 9,092). uvicorn also
has the graceful shutdown a gateway needs (stop accepting, let connections finish up to a
timeout) and reports client disconnects as ASGI ``http.disconnect``, which cancel the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.graph import RoutingGraph, ServerConfig

if TYPE_CHECKING:
    from engine.gateway.app import Gateway

__all__ = ["Options", "add_parser", "make_server", "run", "serve_socket"]

OK, CONFIG_ERROR = 0, 1
_log = logging.getLogger("engine.gateway")


def add_parser(sub: Any) -> None:
    """The ``serve`` subcommand (``sub``: the CLI's subparsers)."""
    s = sub.add_parser(
        "serve",
        help="run the gateway: OpenAI- and Anthropic-compatible HTTP endpoints in front of the routes",
    )
    s.add_argument("file", nargs="?", default="routes.yaml", help="config file (default: ./routes.yaml)")
    s.add_argument(
        "--profile",
        default=os.environ.get("ENGINE_PROFILE") or None,
        help="overlay profiles/NAME.yaml (default: $ENGINE_PROFILE)",
    )
    s.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default: server.listen)")
    s.add_argument("--workers", type=int, metavar="N", help="processes (default: server.workers)")
    s.add_argument("--watch", action="store_true", help="reload when the config file changes")


@dataclass(frozen=True, slots=True)
class Options:
    """Where and how to serve: the ``server:`` section with the command line over it."""

    file: str
    profile: str | None
    host: str
    port: int
    workers: int
    watch: bool

    @classmethod
    def of(cls, args: argparse.Namespace, server: ServerConfig) -> Options:
        listen = args.listen or server.listen
        host, port = split_listen(listen)
        workers = args.workers if args.workers is not None else server.workers
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        return cls(args.file, args.profile, host, port, workers, bool(args.watch))

    def refusal(self, server: ServerConfig) -> str | None:
        """Why this listen may not start: a non-loopback address with no client keys."""
        if server.keys or server.auth == "none" or is_loopback(self.host):
            return None
        return (
            f"refusing to listen on {self.host}:{self.port} with no client keys: anyone who can "
            "reach it could spend your provider keys. Add server.keys (key: ${NAME}), listen on "
            "127.0.0.1, or write server.auth: none"
        )


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:4000), got {listen!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """The command: compile (``ConfigError`` propagates: the CLI prints the located
    problems and exits 1), check the listen, then serve until SIGTERM/SIGINT."""
    from engine.compiler import compile_file

    graph = compile_file(args.file, profile=args.profile)
    try:
        opts = Options.of(args, graph.server)
    except ValueError as exc:
        print(f"engine serve: error: {exc}", file=sys.stderr)
        return 2
    refused = opts.refusal(graph.server)
    if refused is not None:
        print(f"engine serve: error: {refused}", file=sys.stderr)
        return CONFIG_ERROR
    _logging(graph)
    try:
        sock = bind(opts.host, opts.port)
    except OSError as exc:
        print(f"engine serve: error: cannot listen on {opts.host}:{opts.port}: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if opts.workers > 1:
        from engine.gateway.workers import supervise

        return supervise(opts, sock)

    def ready() -> None:
        print(f"engine: serving {opts.file} on {url_of(sock)}", flush=True)

    return serve_socket(opts, sock, graph, on_ready=ready)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (bound before any worker starts, so port 0 picks one port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048, reuse_port=False)
    sock.set_inheritable(True)
    return sock


def _logging(graph: RoutingGraph) -> None:
    """One line per request on stderr (the ``engine.access`` logger, at the level and format
    of ``telemetry.logs``) and the gateway's own messages (reloads, refused configs)."""
    from engine.telemetry.logs import LOGGER, LineHandler

    handler = LineHandler(sys.stderr)
    access = logging.getLogger(LOGGER)
    access.addHandler(handler)
    access.setLevel(graph.telemetry.log_level.upper())
    access.propagate = False
    gateway = logging.getLogger("engine.gateway")
    gateway.addHandler(handler)
    gateway.setLevel(logging.INFO)
    gateway.propagate = False


def serve_socket(
    opts: Options,
    sock: socket.socket,
    graph: RoutingGraph | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
    parent: int | None = None,
) -> int:
    """Serve on ``sock`` in this process until told to stop; 0 after a clean drain."""
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - the serve extra installs uvloop
        runner = asyncio.run
    return int(runner(_main(opts, sock, graph, on_ready, parent)))


async def _main(
    opts: Options,
    sock: socket.socket,
    graph: RoutingGraph | None,
    on_ready: Callable[[], None] | None,
    parent: int | None,
) -> int:
    from engine.api import Engine
    from engine.compiler import compile_file
    from engine.gateway.app import Gateway

    if graph is None:
        graph = compile_file(opts.file, profile=opts.profile)
    engine = Engine(graph, source=opts.file, profile=opts.profile)
    poke = (lambda: os.kill(parent, signal.SIGHUP)) if parent is not None else None
    gateway = Gateway(engine, on_reload=poke)
    server = make_server(gateway, on_ready)
    _signals(server, gateway)
    _tune_gc()
    watcher = asyncio.ensure_future(_watch(gateway)) if opts.watch and parent is None else None
    try:
        await server.serve(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.cancel()
    return OK


def _tune_gc() -> None:
    """Keep the cyclic collector off the request path. At the default gen0 threshold (700) the
    objects of c=50 requests in flight cross it every few requests; the collections find no
    garbage (a request's objects are freed by refcounting), but the survivors they promote
    bring full collections of the whole heap, ~100 ms each, several in 10 s: 12 % of the
    gateway's CPU in all (gc.callbacks, bench/gateway.py --spin). What exists by now (modules,
    the first graph) is frozen out of every scan, and gen0 waits for 10,000 objects (cyclic
    garbage, as on an error path, is still collected, a little later). A reload's old graph is
    freed by refcounting; only cycles of the first graph outlive it."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_server(gateway: Gateway, on_ready: Callable[[], None] | None = None) -> Any:
    """The uvicorn server of ``gateway`` (``await server.serve(sockets=[sock])``): httptools,
    no access log of its own (the engine writes one), the drain as its graceful timeout."""
    import uvicorn

    config = uvicorn.Config(
        gateway,
        loop="none",
        http=_protocol(gateway),
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted (and the middleware costs a call)
        timeout_keep_alive=65,  # longer than a load balancer's idle timeout (60 s is common)
        timeout_graceful_shutdown=max(1, round(gateway.config.drain)),
    )
    return _Server(config, on_ready)


MAX_HEAD = 64 * 1024  # bytes of a request's line and headers (httptools itself has no limit)


def _protocol(gateway: Gateway) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, with the 400 for a request it cannot parse answered as the
    gateway's JSON error with an ``x-request-id`` (uvicorn's own is plain text), and a request
    whose head grows past ``MAX_HEAD`` refused with 431 as its bytes arrive (httptools would
    buffer a header of any size)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        _head = -1  # bytes read of a request head still incomplete; -1: none is being read
        _begun = False  # a request began in the read being parsed (its bytes are not counted)

        def data_received(self, data: bytes) -> None:
            self._begun = False
            super().data_received(data)
            if self._head < 0 or self.transport.is_closing():
                return
            if not self._begun:  # (a read where a head began counts from the next: bounded by one read)
                self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse(431, f"the request line and headers are larger than {MAX_HEAD} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head, self._begun = 0, True

        def on_headers_complete(self) -> None:
            self._head = -1
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            self._refuse(400, "malformed HTTP request (its request line, headers or framing)")

        def _refuse(self, status: int, message: str) -> None:
            rid, body = gateway.unparsed(getattr(self, "url", b""), status, message)
            head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
            head += [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
            head.append(b"x-request-id: %s\r\ncontent-type: application/json\r\n" % rid)
            head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return Protocol


class _Server:
    """uvicorn's server with the gateway's own signal handling (uvicorn's would re-raise
    SIGTERM after the drain, and the process would not exit 0) and a ready callback."""

    def __new__(cls, config: Any, on_ready: Callable[[], None] | None) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if self.started and on_ready is not None:
                    on_ready()

        return Server(config)


def _signals(server: Any, gateway: Gateway) -> None:
    """SIGTERM/SIGINT drain (readiness 503, no new request, in-flight ones finish up to
    ``server.drain``); SIGHUP reloads the config."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        gateway.draining = True
        if server.should_exit:  # a second signal: stop waiting
            server.force_exit = True
        server.should_exit = True

    def hup() -> None:
        task = asyncio.ensure_future(reload_logged(gateway))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    loop.add_signal_handler(signal.SIGHUP, hup)


async def reload_logged(gateway: Gateway) -> bool:
    """Reload; a config that does not compile is logged with its located problems and the old
    graph keeps serving."""
    try:
        await gateway.reload()
    except ConfigError as exc:
        text = "\n".join(p.format(show_source=False) for p in exc.problems)
        _log.error("engine: reload refused, the old graph keeps serving:\n%s", text)
        return False
    except OSError as exc:
        _log.error("engine: reload refused, the old graph keeps serving: %s", exc)
        return False
    return True


async def _watch(gateway: Gateway, every: float = 0.5) -> None:
    """``--watch``: reload when a source file (the config, its profile) changes."""
    seen = _stamps(gateway.engine.graph.sources)
    while True:
        await asyncio.sleep(every)
        now = _stamps(gateway.engine.graph.sources)
        if now != seen:
            seen = now
            await reload_logged(gateway)
            seen = _stamps(gateway.engine.graph.sources)


def _stamps(files: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    out = []
    for f in files:
        try:
            st = Path(f).stat()
            out.append((f, st.st_mtime_ns ^ st.st_size))
        except OSError:
            out.append((f, -1))
    return tuple(out)
