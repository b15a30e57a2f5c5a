"""``route_many``: many requests over the fake, at most N in flight, every outcome handed out once
as it lands (a failure in its place, never stopping the others); closing it cancels what is in
flight; the sync twin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError, RequestError
from engine.fake import FakeServer
from engine.result import Response
from engine.runtime import AttemptEnded, AttemptStarted

Ask = Callable[..., dict[str, Any]]


class InFlight:
    """Tries on the wire now, and the most at once (from the engine's own try events)."""

    def __init__(self, eng: Engine) -> None:
        self.now = self.most = self.started = 0
        self.two = asyncio.Event()
        eng.on("attempt_start", self.start)
        eng.on("attempt_end", self.end)

    def start(self, _: AttemptStarted) -> None:
        self.now += 1
        self.started += 1
        self.most = max(self.most, self.now)
        if self.now >= 2:
            self.two.set()

    def end(self, _: AttemptEnded) -> None:
        self.now -= 1


async def test_every_request_answered_once_at_most_n_in_flight(make: Callable[..., Engine], ask: Ask) -> None:
    eng = make()
    seen = InFlight(eng)
    reqs = [ask("c", f"n{i} [[fake: latency=20ms{' 400' if i % 5 == 0 else ''}]]") for i in range(20)]
    reqs[3] = ask("a", "x [[fake: 503]]")  # a: fails every try, then nowhere to fail over
    out: dict[int, Any] = {}
    async for index, outcome in eng.route_many(reqs, concurrency=3):
        assert index not in out
        out[index] = outcome
    assert sorted(out) == list(range(20))
    assert 1 < seen.most <= 3
    assert all(isinstance(out[i], ProviderError) for i in range(0, 20, 5))
    assert isinstance(out[3], AllTargetsFailed)
    answered = [i for i, o in out.items() if isinstance(o, Response)]
    assert len(answered) == 15 and all(f"n{i}" in out[i].text for i in answered)


async def test_a_malformed_request_is_handed_out_not_raised(make: Callable[..., Engine], ask: Ask) -> None:
    reqs: list[Any] = [ask("c", "one"), {"model": "c", "messages": "not a list"}, ask("c", "three")]
    out = dict([pair async for pair in make().route_many(reqs, concurrency=2)])
    assert isinstance(out[1], RequestError)
    assert isinstance(out[0], Response) and isinstance(out[2], Response)


async def test_closing_it_cancels_what_is_in_flight_and_starts_no_more(
    make: Callable[..., Engine], ask: Ask
) -> None:
    eng = make()
    seen = InFlight(eng)
    read: list[int] = []

    def requests() -> Any:
        for i in range(6):
            read.append(i)
            yield ask("c", f"slow {i} [[fake: latency=5s]]")

    many = eng.route_many(requests(), concurrency=2)
    reader = asyncio.create_task(anext(many))
    await asyncio.wait_for(seen.two.wait(), 5)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await many.aclose()
    assert seen.now == 0 and seen.started == 2  # both cancelled, none started after
    assert read == [0, 1]  # the requests are read only as room frees up
    with pytest.raises(StopAsyncIteration):
        await anext(many)


async def test_an_async_source_and_the_context_manager(make: Callable[..., Engine], ask: Ask) -> None:
    async def source() -> Any:
        for i in range(4):
            yield ask("c", f"a{i}")

    async with make().route_many(source(), concurrency=4) as many:
        got = {i: o.text async for i, o in many if isinstance(o, Response)}
    assert sorted(got) == [0, 1, 2, 3]


def test_concurrency_must_be_at_least_one(make: Callable[..., Engine], ask: Ask) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        make().route_many([ask("c")], concurrency=0)


def test_the_sync_twin(fake: FakeServer, ask: Ask, compile_yaml: Callable[..., Any]) -> None:
    from engine.sync import SyncEngine

    with SyncEngine.from_graph(compile_yaml()) as eng:
        reqs = [ask("c", f"s{i} [[fake: latency=10ms]]") for i in range(8)] + [ask("a", "[[fake: 400]]")]
        with eng.route_many(reqs, concurrency=3) as many:
            out = dict(many)
    assert sorted(out) == list(range(9))
    assert isinstance(out[8], ProviderError)
    answers = {i: o.text for i, o in out.items() if isinstance(o, Response)}
    assert sorted(answers) == list(range(8)) and all(f"s{i}" in answers[i] for i in answers)


def test_closing_the_sync_twin_early_cancels_what_is_in_flight(
    fake: FakeServer, ask: Ask, compile_yaml: Callable[..., Any]
) -> None:
    from engine.sync import SyncEngine

    ended: list[str] = []
    with SyncEngine.from_graph(compile_yaml()) as eng:
        eng.on("attempt_end", lambda e: ended.append(e.attempt.outcome))
        reqs = [ask("c", "quick")] + [ask("c", f"slow {i} [[fake: latency=5s]]") for i in range(5)]
        with eng.route_many(reqs, concurrency=3) as many:
            index, outcome = next(many)
        assert (index, isinstance(outcome, Response)) == (0, True)
    assert ended == ["ok", "cancelled", "cancelled"]  # the two slow ones in flight; none started after
