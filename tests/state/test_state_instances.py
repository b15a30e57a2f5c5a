"""Two engine processes, one Redis, one fake provider (issue 4, item 6): a response cached by one is
served by the other, a circuit opened by one is skipped by the other, and their combined request
rate to a provider stays under its ``rpm``; after recovery exactly one try of one of them probes a
half-open circuit (issue 13); a single-flight leader killed mid-request is replaced by the other
(issue 13)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis

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
  probed: {failures: 1, recovery: 300ms}
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
  prb: {kind: openai, base_url: "{fake}/prb/v1", api_key: key-prb-1, breaker: probed,
        models: {m: {}}}
  slow: {kind: openai, base_url: "{fake}/slow/v1", api_key: key-slow-1, models: {m: {}}}
groups:
  guarded: {strategy: priority, targets: [brk/m, b/m]}
  limited: {strategy: priority, targets: [lim/m, b/m]}
  probing: {strategy: priority, targets: [prb/m, b/m]}
routes:
  - {match: {model: guarded}, to: guarded}
  - {match: {model: limited}, to: limited}
  - {match: {model: probing}, to: probing}
  - {match: {model: slow}, to: slow/m}
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

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next answer; fails after ``timeout`` seconds (a hang guard, not a measure)."""
        stdout = self._io()[1]
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"no answer from the engine process in {timeout} s")
        line = stdout.readline()
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


def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for ``check()`` (a hang guard of ``timeout`` seconds, not a measure)."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_exactly_one_instance_probes_a_half_open_circuit(
    instances: tuple[Instance, Instance], upstream: FakeServer
) -> None:
    """``prb`` opens after one failure for 300 ms; then eight concurrent requests, four on each
    instance, find it half-open: one try of one instance probes it (slowly, so every other try
    comes while the probe is out), the seven others skip it for ``b``."""
    one, two = instances
    upstream.program("/prb", ["503"])
    [opened] = one.route(ask("probing", "open it", temperature=1))
    assert opened["provider"] == "b"
    assert [a[:2] for a in opened["attempts"]] == [["prb/m", "retry"], ["prb/m", "skipped"], ["b/m", "ok"]]
    time.sleep(0.4)  # past the recovery: the circuit may be probed
    upstream.program("/prb", ["latency=1s"])
    one.send([ask("probing", f"one {i}", temperature=1) for i in range(4)])
    two.send([ask("probing", f"two {i}", temperature=1) for i in range(4)])
    results = one.read()["results"] + two.read()["results"]
    assert all(r["error"] is None for r in results)
    assert calls(upstream, "prb") == 2  # the failure that opened it, and the one probe
    assert [r["provider"] for r in results].count("prb") == 1
    skipped = [r["attempts"][0] for r in results if r["provider"] == "b"]
    assert skipped == [["prb/m", "skipped", "circuit open"]] * 7


def test_a_killed_single_flight_leader_is_replaced_by_the_other_instance(
    instances: tuple[Instance, Instance], upstream: FakeServer, redis_url: str
) -> None:
    """One leads a cacheable request whose upstream hangs, two waits for it; one is SIGKILLed.
    Its lease runs out (1 s), two takes the lock (its own process id in the lock's token), asks
    upstream itself and answers, well within its 10 s deadline."""
    one, two = instances
    upstream.program("/slow", ["latency=30s", "latency=1s"])
    one.send([ask("slow", "who answers?")])
    until(lambda: calls(upstream, "slow") == 1, "the leader's call upstream")
    two.send([ask("slow", "who answers?")])
    client = redis.Redis.from_url(redis_url)
    try:
        [lock] = client.keys("engine:flight:*")
        assert client.get(lock).decode().startswith(f"{one.proc.pid}.")  # type: ignore[union-attr]
        os.kill(one.proc.pid, signal.SIGKILL)
        one.proc.wait(5)

        def two_leads() -> bool:
            token = client.get(lock)
            return token is not None and token.decode().startswith(f"{two.proc.pid}.")

        until(two_leads, "the other instance to take the lock over")
    finally:
        client.close()
    [result] = two.read()["results"]
    assert (result["provider"], result["cached"], result["error"]) == ("slow", False, None)
    assert result["attempts"] == [["slow/m", "ok", None]]
    assert calls(upstream, "slow") == 2
