"""Retry classifiers: what is retried on the same target, what fails over, what stops the route;
backoff, and Retry-After / retry-after-ms honoured (or ignored) but never past the deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import pytest
from rawhttp import Handler, read_request, reply

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError
from engine.fake import FakeServer, refused_port
from engine.graph import Backoff, Classifier
from engine.runtime.retry import (
    breaker_failure,
    can_fail_over,
    can_retry,
    parse_retry_after,
    retry_delay,
)

Ask = Callable[..., dict[str, Any]]
Raw = Callable[[Handler], Awaitable[str]]
Make = Callable[..., Engine]

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 3s}
speeds:
  test: {connect: 300ms, read: 400ms, pool: 300ms, retries: 2,
         backoff: {base: 20ms, factor: 2, max: 1s}}
retry:
  ignoring: {retry_after: ignore}
  sticky: {retry_on: {status: [503], errors: []}, failover_on: {status: [], errors: []}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  i: {kind: openai, base_url: "{fake}/i/v1", api_key: ki, retry: ignoring, models: {m: {}}}
  s: {kind: openai, base_url: "{fake}/s/v1", api_key: ks, retry: sticky, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  gi: {strategy: priority, targets: [i/m, b/m]}
  gs: {strategy: priority, targets: [s/m, b/m]}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: gi}, to: gi}
  - {match: {model: gs}, to: gs}
"""


def trail(resp_or_err: Any) -> list[tuple[str, str, int | None]]:
    return [(a.target, a.outcome, a.status) for a in resp_or_err.attempts]


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(CONFIG)


async def test_a_retryable_status_is_retried_on_the_same_target(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"])
    resp = await eng.route(ask())
    assert trail(resp) == [("a/m", "retry", 503), ("a/m", "ok", 200)]


async def test_retries_exhausted_fail_over(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["503", "500", "502"])
    resp = await eng.route(ask())
    assert trail(resp) == [
        ("a/m", "retry", 503),
        ("a/m", "retry", 500),
        ("a/m", "failover", 502),
        ("b/m", "ok", 200),
    ]


async def test_a_client_error_stops_at_once_with_provider_error(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["400"])
    with pytest.raises(ProviderError) as info:
        await eng.route(ask())
    assert info.value.status == 400
    assert trail(info.value) == [("a/m", "fatal", 400)]
    assert "(injected)" in info.value.body
    assert not any(r["path"].startswith("/b/") for r in fake.requests)


async def test_a_failover_status_that_is_not_retried_moves_on_at_once(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["401"])
    resp = await eng.route(ask())
    assert trail(resp) == [("a/m", "failover", 401), ("b/m", "ok", 200)]


@pytest.mark.parametrize(("directive", "kind"), [("reset", "reset"), ("latency=600ms", "timeout")])
async def test_transport_errors_in_retry_on_are_retried(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    directive: str,
    kind: str,
) -> None:
    fake.program("/a/", [directive])
    resp = await eng.route(ask())
    assert trail(resp) == [("a/m", "retry", None), ("a/m", "ok", 200)]
    assert resp.attempts[0].error is not None and resp.attempts[0].error.startswith(kind)


async def test_a_refused_connection_is_retried_then_failed_over(
    make: Make,
    fake: FakeServer,
    ask: Ask,
) -> None:
    text = CONFIG.replace('"{fake}/a/v1"', f'"http://127.0.0.1:{refused_port()}/v1"')
    resp = await make(text).route(ask())
    assert trail(resp) == [
        ("a/m", "retry", None),
        ("a/m", "retry", None),
        ("a/m", "failover", None),
        ("b/m", "ok", 200),
    ]
    assert {a.error for a in resp.attempts[:3]} == {"connect: Connection refused"}


async def test_a_protocol_error_fails_over_without_retry(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["malformed"])
    resp = await eng.route(ask())
    assert trail(resp) == [("a/m", "failover", 200), ("b/m", "ok", 200)]
    assert resp.attempts[0].error is not None and resp.attempts[0].error.startswith("protocol")


async def test_retried_but_never_failed_over_ends_in_provider_error(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/s/", ["503", "503", "503"])
    with pytest.raises(ProviderError) as info:
        await eng.route(ask("gs"))
    assert trail(info.value) == [("s/m", "retry", 503), ("s/m", "retry", 503), ("s/m", "fatal", 503)]


async def test_every_target_failing_raises_all_targets_failed(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program(None, ["503"] * 6)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask())
    assert [a.outcome for a in info.value.attempts] == ["retry", "retry", "failover"] * 2
    assert "a/m retry 503" in info.value.describe()
    assert "a/m retry 503" not in str(info.value)  # one line; the attempts are notes


async def test_backoff_grows_between_retries(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["503", "503"])
    start = time.perf_counter()
    resp = await eng.route(ask())
    assert [a.outcome for a in resp.attempts] == ["retry", "retry", "ok"]
    assert time.perf_counter() - start >= 0.020 + 0.040


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("retry_after=0.3", 0.3),
        ("retry_after_ms=250", 0.25),
    ],
)
async def test_retry_after_is_honoured(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    header: str,
    seconds: float,
    loop_lag: Any,
) -> None:
    fake.program("/a/", [f"429 {header}"])
    async with loop_lag() as lag:
        start = time.perf_counter()
        resp = await eng.route(ask())
        elapsed = time.perf_counter() - start
    assert trail(resp) == [("a/m", "retry", 429), ("a/m", "ok", 200)]
    assert resp.attempts[0].retry_after == pytest.approx(seconds)
    # the wait is the server's, not a backoff on top of it (which would add 10 ms or more)
    assert seconds <= elapsed < seconds + 0.2 + lag.worst


async def test_retry_after_is_ignored_when_the_classifier_says_so(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/i/", ["503 retry_after=2"])
    start = time.perf_counter()
    resp = await eng.route(ask("gi"))
    assert trail(resp) == [("i/m", "retry", 503), ("i/m", "ok", 200)]
    assert resp.attempts[0].retry_after == 2.0
    assert time.perf_counter() - start < 2.0  # the header was read and not waited for


async def test_retry_after_past_the_deadline_fails_over_instead_of_waiting(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503 retry_after=10"])
    resp = await eng.route(ask())
    # failed over, not retried: waiting 10 s would have run into the route's deadline
    assert trail(resp) == [("a/m", "failover", 503), ("b/m", "ok", 200)]
    assert resp.attempts[0].retry_after == 10.0


RAW = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 3s}
speeds:
  test: {connect: 300ms, read: 400ms, pool: 300ms, retries: 2, backoff: {base: 10ms}}
providers:
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
routes:
  - {match: {}, to: g}
groups:
  g: {strategy: priority, targets: [up/m, b/m]}
"""
OK = json.dumps(
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
).encode()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
async def test_a_retry_after_that_is_not_a_number_does_not_stop_the_retry(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    value: str,
) -> None:
    answers = [
        reply(b"{}", 503, {"retry-after-ms": value}),
        reply(b"{}", 503, {"retry-after": value}),
        reply(OK),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers and await read_request(reader) is not None:
            writer.write(answers.pop(0))
            await writer.drain()

    eng = make(RAW.replace("{raw}", await raw(handler)))
    resp = await eng.route(ask())
    assert trail(resp) == [("up/m", "retry", 503), ("up/m", "retry", 503), ("up/m", "ok", 200)]
    assert [a.retry_after for a in resp.attempts] == [None, None, None]  # the backoff applied


# -- the rules, without the network ---------------------------------------------------------------

T = Classifier(
    "t",
    frozenset({429, 503}),
    frozenset({"timeout"}),
    frozenset({401, 503}),
    frozenset({"timeout", "protocol"}),
)


@pytest.mark.parametrize(
    ("status", "error", "retry", "failover"),
    [
        (503, None, True, True),
        (429, None, True, False),
        (401, None, False, True),
        (400, None, False, False),
        (None, "timeout", True, True),
        (None, "protocol", False, True),
        (None, "reset", False, False),
    ],
)
def test_classifier_rules(status: int | None, error: str | None, retry: bool, failover: bool) -> None:
    assert can_retry(T, status, error) is retry
    assert can_fail_over(T, status, error) is failover


@pytest.mark.parametrize(
    ("status", "error", "counts"),
    [
        (500, None, True),
        (503, None, True),
        (429, None, True),
        (408, None, True),
        (400, None, False),
        (401, None, False),
        (404, None, False),
        (None, "connect", True),
    ],
)
def test_what_counts_against_a_circuit(status: int | None, error: str | None, counts: bool) -> None:
    assert breaker_failure(status, error) is counts


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    for bad in ("nan", "inf", "-inf", "1e999", "Infinity"):  # ignored: the other header applies
        assert parse_retry_after({"retry-after-ms": bad}) is None
        assert parse_retry_after({"retry-after-ms": bad, "retry-after": "2"}) == 2.0
        assert parse_retry_after({"retry-after": bad}) is None
    assert parse_retry_after({"retry-after-ms": "-5"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "1e300"}) == 1e297  # finite: past any deadline
    later = parse_retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert later is not None and 28 <= later <= 31


def test_retry_delay_is_capped_backoff_plus_jitter_unless_retry_after() -> None:
    b = Backoff(base=0.1, factor=2, max=0.3, jitter=0.05)
    assert retry_delay(b, 1, 0.0, None) == pytest.approx(0.1)
    assert retry_delay(b, 2, 0.0, None) == pytest.approx(0.2)
    assert retry_delay(b, 3, 0.0, None) == pytest.approx(0.3)  # capped
    assert retry_delay(b, 3, 0.5, None) == pytest.approx(0.325)
    assert retry_delay(b, 1, 0.9, 1.5) == 1.5
