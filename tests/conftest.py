"""Fixtures for the whole suite: a real redis-server on a free loopback port, started once per
session (``redis_server``: its URL). The state tests (tests/state) and the examples
(tests/test_examples.py) use it.

A missing redis-server fails the tests that need it with a clear message; nothing is skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start(exe: str) -> tuple[subprocess.Popen[bytes], int]:
    last = ""
    for _ in range(3):  # the free port may be taken between probe and bind: try another
        port = _free_port()
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if proc.poll() is not None:
                break
            if _pings(port):
                return proc, port
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=5)[0]
        last = out.decode(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not start on loopback:\n{last}", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a redis-server started for this session."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed, and the state tests need a real one. "
                    "Install it with `bash .ci/setup dev` (or `apt-get install redis-server`).",
                    pytrace=False)
    proc, port = _start(exe)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
