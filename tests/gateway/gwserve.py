"""Helpers of tests/gateway (conftest.py makes the fixtures). The gateway under test:
``engine serve``'s ASGI app on uvicorn, in-process on its own loop
thread and a free loopback port (``served``: one per module, over the session's fake provider),
or as a real ``engine serve`` subprocess (``spawn``) where signals and workers are the point.
Client keys come from the environment the config is compiled with, as in production."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from engine.api import Engine
from engine.compiler import compile_text
from engine.fake import FakeServer
from engine.gateway.app import Gateway
from engine.gateway.serve import make_server

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

KEYS = {
    "TEAM_KEY": "sk-team-0123456789",
    "NARROW_KEY": "sk-narrow-0123456789",
    "LIMITED_KEY": "sk-limited-0123456789",
    "OPS_KEY": "sk-ops-0123456789",
}

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 3s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456,
      models: {m: {price: {input: 1.0, output: 2.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-123456, models: {m: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-3-5-haiku-latest: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
routes:
  - match: {model: g}
    to: g
  - match: {model: solo}
    to: a/m
  - match: {model: anth}
    to: anth/claude-3-5-haiku-latest
  - match: {model: slow}
    to: a/m
    deadline: 300ms
  - match: {model: "gpt-*"}
    to: a
server:
  keepalive: 100ms
  max_body: 20KB
  keys:
    team: {key: "${TEAM_KEY}", models: [g, solo, anth, slow, "gpt-*"], metadata: {team: a}}
    narrow: {key: "${NARROW_KEY}", models: [solo]}
    limited: {key: "${LIMITED_KEY}", limits: {rpm: 2}}
    ops: {key: "${OPS_KEY}", admin: true}
"""


class Served:
    """A gateway serving on its own event-loop thread: ``url``, ``gateway``, ``call(coro)``."""

    def __init__(self, text: str, fake: FakeServer, env: dict[str, str]) -> None:
        self.graph = compile_text(text.replace("{fake}", fake.url), base_dir=ROOT, env=env)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(Engine.from_graph(self.graph))
        self.server = make_server(self.gateway)
        ready = threading.Event()
        self.server.config.callback_notify = None
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the gateway did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
            while not self.server.started and not task.done():
                await asyncio.sleep(0.01)
            ready.set()
            await task

        self.loop.run_until_complete(main())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the gateway's loop (a reload, a look at its engine)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self.loop.close()


class Spawned:
    """``engine serve`` in a subprocess: ``url`` from its ready line; ``lines`` what it wrote on
    stderr so far (read on a thread), ``wait_for(text)`` until a line has it."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        full = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args],
            cwd=cwd,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.ready = self._ready_line()
        self.url = self.ready.split(" on ", 1)[1].split()[0] if " on " in self.ready else ""

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def _ready_line(self) -> str:
        assert self.proc.stdout is not None
        out = self.proc.stdout
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(out.readline()), daemon=True)
        reader.start()
        reader.join(60)
        return box[0].strip() if box else ""

    def wait_for(self, text: str, within: float = 20) -> str:
        """The first stderr line containing ``text`` (AssertionError after ``within`` s)."""
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in x for x in self.lines), within)
            assert found, f"no {text!r} on stderr:\n" + "\n".join(self.lines[-30:])
            return next(x for x in self.lines if text in x)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """The exit code (the process is killed past ``timeout``: -9)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.wait(20)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
