"""Every failed attempt says what went wrong as data: ``Attempt.kind`` (one of ``ErrorKind``) and
``Attempt.detail`` (the human part), with ``Attempt.error`` the line it always was. Each kind is
produced here over loopback, by the fake's faults or a closed port. (That no secret reaches an
attempt's fields, ``detail`` among them, is test_runtime_secrets.py's: it checks their repr.)"""

from __future__ import annotations

import copy
import pickle
import socket
import typing
from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, DeadlineExceeded, RouteError, StreamInterrupted
from engine.fake import FakeServer
from engine.result import Attempt, Done, ErrorKind

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

CONFIG = """\
version: 1
defaults: {speed: test, retry: none, breaker: none, deadline: 3s}
speeds:
  test: {connect: 300ms, read: 300ms, pool: 300ms, retries: 0, backoff: {base: 10ms}}
retry:
  none: {retry_on: {status: [], errors: []}}
breakers:
  once: {failures: 1, recovery: 10s}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-secret-1, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  fuse: {kind: openai, base_url: "{fake}/fuse/v1", api_key: kf, breaker: once, models: {m: {}}}
  lim: {kind: openai, base_url: "{fake}/lim/v1", api_key: kl, limits: {rpm: 1},
        models: {m: {}}}
  down: {kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: kd, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  fused: {strategy: priority, targets: [fuse/m, b/m]}
  limited: {strategy: priority, targets: [lim/m, b/m]}
  unreachable: {strategy: priority, targets: [down/m, b/m]}
  race: {strategy: hedged, targets: [a/m, b/m], hedge_after: 20ms}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: fused}, to: fused}
  - {match: {model: limited}, to: limited}
  - {match: {model: unreachable}, to: unreachable}
  - {match: {model: race}, to: race}
  - {match: {model: slow}, to: a/m, deadline: 200ms}
"""


@pytest.fixture
def eng(make: Make) -> Engine:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return make(CONFIG.replace("{port}", str(port)))


def check(a: Attempt, kind: ErrorKind, prefixed: bool = True) -> None:
    """``a`` failed with ``kind``; its error is the line it always was."""
    assert a.kind == kind, a
    assert a.detail and not a.detail.startswith(f"{kind}:"), a
    assert a.error == (f"{kind}: {a.detail}" if prefixed else a.detail), a


@pytest.mark.parametrize(
    ("fault", "kind", "says"),
    [
        ("503", "status", "503"),
        ("latency=1s", "timeout", ""),
        ("reset", "reset", ""),
        ("malformed", "protocol", "Expecting value"),
    ],
)
async def test_a_failed_try_says_its_kind_and_detail(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    fault: str,
    kind: ErrorKind,
    says: str,
) -> None:
    fake.program("/a/", [fault])
    resp = await eng.route(ask("g"))
    first = resp.attempts[0]
    assert (first.target, first.outcome) == ("a/m", "failover")
    check(first, kind)
    assert says in (first.detail or "")
    assert resp.attempts[1].kind is None and resp.attempts[1].detail is None  # answered


async def test_a_refused_connection_is_connect(eng: Engine, ask: Ask) -> None:
    resp = await eng.route(ask("unreachable"))
    check(resp.attempts[0], "connect")


async def test_an_open_circuit_and_a_used_up_rate_limit_are_kinds_too(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/fuse/", ["500"])
    await eng.route(ask("fused"))  # opens fuse's circuit
    skipped = (await eng.route(ask("fused"))).attempts[0]
    assert skipped.outcome == "skipped"
    check(skipped, "circuit_open", prefixed=False)
    assert skipped.error == "circuit open"
    await eng.route(ask("limited"))  # lim's one request of the minute
    limited = (await eng.route(ask("limited"))).attempts[0]
    check(limited, "rate_limited", prefixed=False)
    assert limited.error == "rate limited"


async def test_a_lost_hedge_and_a_deadline_are_kinds(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["latency=500ms"])
    resp = await eng.route(ask("race"))
    lost = next(a for a in resp.attempts if a.outcome == "cancelled")
    check(lost, "cancelled", prefixed=False)
    fake.program("/a/", ["latency=1s"])
    with pytest.raises(DeadlineExceeded) as info:
        await eng.route(ask("slow"))
    check(info.value.attempts[-1], "deadline", prefixed=False)


async def test_a_broken_stream_says_protocol_and_its_detail(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["stream_error"])
    with pytest.raises(StreamInterrupted) as info:
        async for _ in eng.stream(ask("g", "one two three four")):
            pass
    broke = info.value.attempts[-1]
    check(broke, "protocol")
    assert broke.detail is not None and "Overloaded (injected)" in broke.detail
    assert f"({broke.error})" in str(info.value)


async def test_attempts_keep_kind_and_detail_through_pickle_and_copy(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["503"])
    fake.program("/b/", ["503"])
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("g"))
    err = info.value
    for again in (pickle.loads(pickle.dumps(err)), copy.deepcopy(err)):
        assert isinstance(again, RouteError)
        assert [(a.kind, a.detail, a.error) for a in again.attempts] == [
            (a.kind, a.detail, a.error) for a in err.attempts
        ]
        assert [a.kind for a in again.attempts] == ["status", "status"]
        assert again.__notes__ == err.__notes__


async def test_a_stream_that_answers_has_no_error_kind(eng: Engine, ask: Ask) -> None:
    events = [e async for e in eng.stream(ask("g"))]
    done = events[-1]
    assert isinstance(done, Done)
    assert [(a.outcome, a.kind, a.detail, a.error) for a in done.attempts] == [("ok", None, None, None)]


def test_an_attempt_built_from_its_error_text_alone_reads_kind_and_detail_back() -> None:
    assert set(typing.get_args(ErrorKind)) >= {
        "timeout",
        "connect",
        "reset",
        "protocol",
        "status",
        "circuit_open",
        "cancelled",
    }
    legacy = Attempt("a/m", "failover", 503, "status: overloaded", 0.012)
    assert (legacy.kind, legacy.detail) == ("status", "overloaded")
    assert str(legacy) == "a/m failover 503 status: overloaded 12.0ms"
    built = Attempt("a/m", "failover", 503, latency=0.012, kind="status", detail="overloaded")
    assert built == legacy
    assert Attempt("a/m", "skipped", kind="circuit_open").error == "circuit open"
    assert Attempt("a/m", "skipped", error="circuit open").kind == "circuit_open"
    assert Attempt("a/m", "cancelled", error="hedge lost (answered late)").kind == "cancelled"
    assert Attempt("a/m", "retry", error="something else").kind is None
    assert Attempt("a/m", "ok", 200).kind is None


def test_the_readme_names_every_error_kind() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    text = readme[readme.index("What went wrong in an attempt") :][:1200]
    assert [k for k in typing.get_args(ErrorKind) if f"`{k}`" not in text] == []
