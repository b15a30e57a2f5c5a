"""Command-line arguments (or keyword arguments) go in; a running fake provider comes out: in this
process until interrupted (``main``), on a background thread (``serve_in_thread``), plus
``refused_port`` for the "nothing listens here" case."""

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

__all__ = ["main", "refused_port", "serve_in_thread"]


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine.fake",
        description="The bundled fake LLM provider: openai, anthropic, gemini and ollama wire "
        "formats on one port, with fault injection.",
        epilog="directives (x-fake header or [[fake: ...]] in the last user message):\n"
        + "\n".join(f"  {k:<18} {v}" for k, v in DIRECTIVES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400, help="0 picks a free port (default 8400)")
    p.add_argument("--require-key", default=None, help="accept only this API key")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    return p


async def _serve(args: argparse.Namespace) -> None:
    srv = FakeServer(args.host, args.port, require_key=args.require_key,
                     chunk_delay=args.chunk_delay)
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
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"fake provider: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
