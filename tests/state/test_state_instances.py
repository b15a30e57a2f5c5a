"""Two engine processes, one Redis, one fake provider (issue 4, item 6): a response cached by one is
served by the other, a circuit opened by one is skipped by the other, and their combined request
rate to a provider stays under its ``rpm``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from engine.fake import FakeServer

HERE = Path(__file__).resolve().parent
RPM = 10

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 10s}
speeds:
  test: {connect: 1s, read: 5s, pool: 5s, retries: 1, backoff: {base: 10ms, max: 40ms}}
breakers:
  quick: {failures: 2, recovery: 1m}
cache:
  backend: "{redis}"
  responses: {ttl: 10m, max_temperature: 0.1}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-1, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-1, models: {m: {}}}
  brk: {kind: openai, base_url: "{fake}/brk/v1", api_key: key-brk-1, breaker: quick,
        models: {m: {}}}
  lim: {kind: openai, base_url: "{fake}/lim/v1", api_key: key-lim-1, limits: {rpm: RPM},
        models: {m: {}}}
groups:
  guarded: {strategy: priority, targets: [brk/m, b/m]}
  limited: {strategy: priority, targets: [lim/m, b/m]}
routes:
  - {match: {model: guarded}, to: guarded}
  - {match: {model: limited}, to: limited}
  - {match: {}, to: a/m}
""".replace("RPM", str(RPM))


class Instance:
    """An engine process driven over stdin/stdout."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "instance.py"), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE.parent.parent,
        )

    def _io(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def read(self) -> dict[str, Any]:
        line = self._io()[1].readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the engine process ended:\n{err[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def send(self, requests: list[dict[str, Any]]) -> None:
        stdin = self._io()[0]
        stdin.write(json.dumps({"route": requests}) + "\n")
        stdin.flush()

    def route(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        self.send(list(requests))
        results: list[dict[str, Any]] = self.read()["results"]
        return results

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                stdin = self._io()[0]
                stdin.write(json.dumps({"quit": True}) + "\n")
                stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def instances(tmp_path: Path, redis_url: str, upstream: FakeServer) -> Iterator[tuple[Instance, Instance]]:
    config = tmp_path / "routes.yaml"
    config.write_text(CONFIG.replace("{fake}", upstream.url).replace("{redis}", redis_url))
    one, two = Instance(config), Instance(config)  # both start at once
    try:
        assert one.read() == {"ready": True} and two.read() == {"ready": True}
        yield one, two
    finally:
        one.close()
        two.close()


def ask(model: str, text: str = "hello", temperature: float = 0) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": temperature}


def calls(fake: FakeServer, prefix: str) -> int:
    return sum(
        n
        for path, n in fake.stats(log=False)["paths"].items()
        if path.startswith(f"/{prefix}/") and path.endswith("/chat/completions")
    )


def test_two_engine_processes_share_cache_circuits_and_rate_limits(
    instances: tuple[Instance, Instance], upstream: FakeServer
) -> None:
    one, two = instances

    # a response cached by one is served by the other
    [first] = one.route(ask("a"))
    [second] = two.route(ask("a"))
    assert (first["provider"], first["cached"]) == ("a", False)
    assert (second["provider"], second["cached"]) == ("a", True)
    assert second["attempts"] == [["a/m", "cached", None]]
    assert calls(upstream, "a") == 1

    # a circuit opened by one is skipped by the other
    upstream.program("/brk", ["503", "503"])
    [opened] = one.route(ask("guarded", temperature=1))
    assert [a[1] for a in opened["attempts"]] == ["retry", "failover", "ok"]
    [skipped] = two.route(ask("guarded", temperature=1))
    assert skipped["provider"] == "b"
    assert skipped["attempts"][0] == ["brk/m", "skipped", "circuit open"]
    assert calls(upstream, "brk") == 2

    # together they stay under lim's rpm: the rest fails over to b
    n = 15
    one.send([ask("limited", f"one {i}", temperature=1) for i in range(n)])
    two.send([ask("limited", f"two {i}", temperature=1) for i in range(n)])
    results = one.read()["results"] + two.read()["results"]
    assert all(r["error"] is None for r in results)
    assert calls(upstream, "lim") == RPM
    by = [r["provider"] for r in results]
    assert by.count("lim") == RPM and by.count("b") == 2 * n - RPM
    refused = [r["attempts"][0] for r in results if r["provider"] == "b"]
    assert all(a == ["lim/m", "skipped", "rate limited"] for a in refused)
