"""``--workers N``: N processes serving one listening socket (bound once, before they start),
supervised by the first process, which passes SIGHUP (reload), SIGTERM and SIGINT (drain) on to
every worker and exits 0 once they all have. ``--watch`` runs in the supervisor: a changed file
is a SIGHUP to every worker. State (rate limits, circuits, cache) is shared through
``cache.backend: redis://``; ``/metrics`` sums over the workers with prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a directory the supervisor makes before any
worker starts; ``Engine.exposition()`` then reads every worker's values)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.gateway.serve import Options

__all__ = ["supervise"]

_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _worker(opts: Options, sock: socket.socket, parent: int) -> None:
    from engine.gateway.serve import _logging, serve_socket

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor passes Ctrl-C on as SIGTERM
    from engine.compiler import compile_file

    graph = compile_file(opts.file, profile=opts.profile)
    _logging(graph)
    sys.exit(serve_socket(opts, sock, graph, parent=parent))


def supervise(opts: Options, sock: socket.socket) -> int:
    """Start the workers, print the ready line once each is serving, pass signals on."""
    from engine.gateway.serve import url_of

    folder = tempfile.mkdtemp(prefix="engine-metrics-")
    os.environ[_DIR] = folder  # before any worker imports prometheus_client
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(opts, sock, os.getpid()), daemon=False) for _ in range(opts.workers)
    ]
    stopping = False

    def forward(sig: int, _frame: Any) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            sig = signal.SIGTERM
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    try:
        for p in procs:
            p.start()
        if _ready(sock, procs):
            print(f"engine: serving {opts.file} on {url_of(sock)} ({opts.workers} workers)", flush=True)
        _wait(opts, procs, lambda: stopping, forward)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if all(p.exitcode == 0 for p in procs) else 1


def _ready(sock: socket.socket, procs: list[Any], within: float = 60.0) -> bool:
    """Whether the workers answer ``/health`` (polled: they are other processes)."""
    import http.client

    host, port = sock.getsockname()[:2]
    end = time.monotonic() + within
    while time.monotonic() < end:
        if any(p.exitcode is not None for p in procs):
            return False
        try:
            conn = http.client.HTTPConnection(host, port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _wait(opts: Options, procs: list[Any], stopping: Any, forward: Any) -> None:
    """Until every worker exited; with ``--watch``, a changed source is a SIGHUP to them."""
    from engine.compiler import compile_file

    sources: tuple[str, ...] = ()
    if opts.watch:
        try:
            sources = compile_file(opts.file, profile=opts.profile).sources
        except Exception:
            sources = (opts.file,)
    seen = _stamps(sources)
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(timeout=0.5 / len(procs))
        if opts.watch and not stopping():
            now = _stamps(sources)
            if now != seen:
                seen = now
                forward(signal.SIGHUP, None)


def _stamps(files: tuple[str, ...]) -> tuple[int, ...]:
    out = []
    for f in files:
        try:
            st = Path(f).stat()
            out.append(st.st_mtime_ns ^ st.st_size)
        except OSError:
            out.append(-1)
    return tuple(out)
