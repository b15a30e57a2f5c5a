"""Command-line arguments (or keyword arguments) go in; a running fake provider comes out: in this
process until interrupted (``main``), on a background thread (``serve_in_thread``), plus
``refused_port`` for the "nothing listens here" case. ``add_arguments`` is the one definition of
the command line (``python -m engine.fake`` and ``engine fake`` both use it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from engine.fake.faults import DIRECTIVES
from engine.fake.server import FakeServer

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "add_arguments",
    "help_epilog",
    "main",
    "refused_port",
    "run",
    "serve_in_thread",
]


@contextlib.contextmanager
def serve_in_thread(*, use_uvloop: bool = False, **kwargs: Any) -> Iterator[FakeServer]:
    """``with serve_in_thread() as srv:`` a ``FakeServer(**kwargs)`` on a background thread."""
    srv = FakeServer(**kwargs).run_in_thread(use_uvloop=use_uvloop)
    try:
        yield srv
    finally:
        srv.stop_thread()


def refused_port(host: str = "127.0.0.1") -> int:
    """A free loopback port with nothing listening on it (connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8400
DESCRIPTION = (
    "The bundled fake LLM provider: the openai, anthropic, gemini and ollama wire\n"
    "formats on one port, deterministic answers, and faults on demand."
)


def help_epilog() -> str:
    """How to ask for faults, with every directive of ``DIRECTIVES`` (read when called, so a
    directive added there shows up here)."""
    width = max(len(k) for k in DIRECTIVES) + 2
    lines = [
        "faults: a directive in the last user message, [[fake: 503]] or [[fake: latency=2s 503]];",
        "  or an x-fake header on the request (x-fake: status=429 retry_after=1);",
        "  or a program: one fault per request, in order, for a scope (see the admin calls).",
        "",
        "directives (tokens separated by spaces, commas or semicolons; durations 250ms, 2s, 1m):",
        *(f"  {k:<{width}}{v}" for k, v in DIRECTIVES.items()),
        "",
        "admin calls:",
        '  POST /_fake/program   {"scope": "openai", "model": "gpt-4o-mini", "faults": ["503", "503", "ok"]}',
        "                        scope: a kind (openai, anthropic, gemini, ollama), a path prefix",
        '                        ("/team-a/") or null (every chat call); model narrows it; a',
        '                        program with "rate": 0.3 and "seed": 7 draws its faults at random',
        "  POST /_fake/reset     forget every program and counter",
        "  GET  /_fake/stats     requests per path, kind, model and status, and a request log",
        '  GET  /_fake/health    {"ok": true}',
        "",
        "examples:",
        '  curl -s localhost:8400/_fake/program -d \'{"scope": "openai", "faults": ["503"]}\'',
        "  engine fake --require-key sk-test     # anything else gets the kind's 401",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The fake's options, description and directive list on ``p`` (``python -m engine.fake``
    and ``engine fake`` share them)."""
    p.description = DESCRIPTION
    p.epilog = help_epilog()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--require-key",
        default=None,
        metavar="KEY",
        help="accept only this API key (in the header each kind uses); others get the kind's 401",
    )
    p.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds between stream events (default 0)",
    )
    return p


def _parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m engine.fake"))


async def _serve(args: argparse.Namespace) -> None:
    srv = FakeServer(args.host, args.port, require_key=args.require_key, chunk_delay=args.chunk_delay)
    await srv.start()
    print(f"fake provider listening on {srv.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await srv.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake provider until SIGINT/SIGTERM; exit status 0, or 2 on a usage error."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Serve with the options ``add_arguments`` parsed; 0 when stopped, 1 when it cannot listen."""
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"fake provider: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
