"""Circuit breakers: consecutive failures open a circuit, an open circuit is skipped at no network
cost (and shows in plan and health), after ``recovery`` one probe decides half-open -> closed or
open again; per provider or per provider/model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from purgatory import AsyncCircuitBreakerFactory

from engine.api import Engine
from engine.errors import AllTargetsFailed
from engine.fake import FakeServer

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

CONFIG = """\
version: 1
defaults: {speed: test, retry: quick, breaker: none, deadline: 3s}
speeds:
  test: {connect: 300ms, read: 1s, pool: 300ms, retries: 0, backoff: {base: 10ms}}
retry:
  quick: {retry_on: {status: [], errors: []}}
breakers:
  tight: {failures: 2, recovery: 300ms}
  per_model: {failures: 1, recovery: 10s, scope: model}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, breaker: tight, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: kc, breaker: tight, models: {m: {}}}
  d: {kind: openai, base_url: "{fake}/d/v1", api_key: kd, breaker: per_model,
      models: {m1: {}, m2: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  one: {strategy: priority, targets: [a/m, c/m, b/m], max_attempts: 1}
  closed_only: {strategy: priority, targets: [a/m, c/m]}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: one}, to: one}
  - {match: {model: closed_only}, to: closed_only}
  - {match: {model: "m*"}, to: d}
"""


def hits(fake: FakeServer, prefix: str) -> int:
    return sum(r["path"].startswith(prefix) for r in fake.requests)


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(CONFIG)


async def open_a(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["503", "503"])
    for _ in range(2):
        assert (await eng.route(ask("g"))).provider == "b"


async def test_a_circuit_opens_skips_then_half_opens_and_closes(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    changes: list[tuple[str, str]] = []
    eng.on("breaker", lambda e: changes.append((e.circuit, e.state)))
    await open_a(eng, fake, ask)
    assert changes == [("a", "open")]
    assert eng.health()["a"].circuit == "open"
    plan = eng.plan(ask("g")).to_dict()
    assert plan["first_target"] == "b/m"
    assert plan["targets"][0]["breaker"]["state"] == "open"

    resp = await eng.route(ask("g"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "skipped"), ("b/m", "ok")]
    assert resp.attempts[0].latency == 0.0 and resp.attempts[0].error == "circuit open"
    assert hits(fake, "/a/") == 2  # no network cost

    await asyncio.sleep(0.35)
    assert eng.health()["a"].circuit == "half_open"
    assert eng.plan(ask("g")).to_dict()["first_target"] == "a/m"
    resp = await eng.route(ask("g"))  # the probe succeeds
    assert resp.provider == "a"
    assert changes == [("a", "open"), ("a", "half_open"), ("a", "closed")]
    assert eng.health()["a"].circuit == "closed"


async def test_a_failed_probe_opens_the_circuit_again(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    await open_a(eng, fake, ask)
    await asyncio.sleep(0.35)
    fake.program("/a/", ["503"])
    resp = await eng.route(ask("g"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "failover"), ("b/m", "ok")]
    assert eng.health()["a"].circuit == "open"
    resp = await eng.route(ask("g"))
    assert resp.attempts[0].outcome == "skipped"


async def test_client_errors_do_not_open_a_circuit(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["401"] * 4)
    for _ in range(4):
        await eng.route(ask("g"))
    assert eng.health()["a"].circuit == "closed"
    assert (await eng.route(ask("g"))).provider == "a"


async def test_a_success_resets_the_failure_count(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["503", "ok", "503", "ok"])
    for _ in range(4):
        await eng.route(ask("g"))
    assert eng.health()["a"].circuit == "closed"


async def test_a_skipped_target_does_not_count_against_max_attempts(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    await open_a(eng, fake, ask)
    resp = await eng.route(ask("one"))
    assert [(a.target, a.outcome) for a in resp.attempts] == [("a/m", "skipped"), ("c/m", "ok")]


async def test_every_circuit_open_fails_without_touching_the_network(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"] * 2)
    fake.program("/c/", ["503"] * 2)
    for _ in range(2):
        with pytest.raises(AllTargetsFailed):
            await eng.route(ask("closed_only"))
    before = len(fake.requests)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("closed_only"))
    assert [a.outcome for a in info.value.attempts] == ["skipped", "skipped"]
    assert len(fake.requests) == before


async def test_scope_model_keeps_one_circuit_per_model(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/d/", ["503"])
    with pytest.raises(AllTargetsFailed):
        await eng.route(ask("m1"))
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("m1"))
    assert [a.outcome for a in info.value.attempts] == ["skipped"]
    assert (await eng.route(ask("m2"))).model == "m2"
    health = eng.health()["d"]
    assert health.circuit == "open" and dict(health.circuits) == {"d/m1": "open", "d/m2": "closed"}
    assert eng.plan(ask("m1")).to_dict()["tree"]["circuit"] == "open"
    assert eng.plan(ask("m2")).to_dict()["tree"]["circuit"] == "closed"


async def test_the_circuit_factory_is_injectable(make: Make, fake: FakeServer, ask: Ask) -> None:
    factory = AsyncCircuitBreakerFactory()
    eng = make(CONFIG, circuit_factory=factory)
    await open_a(eng, fake, ask)
    # stored under the circuit's name and its endpoint's identity (see Circuits)
    scope = eng._core.runtime.by_provider["a"].identity[:16]
    breaker = await factory.get_breaker(f"a@{scope}")
    assert breaker.context.state == "opened"
