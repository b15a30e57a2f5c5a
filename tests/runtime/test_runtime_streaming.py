"""Streaming: unified events for every kind, retries and failover until the first event, a typed
``StreamInterrupted`` (with the text received) after it, time to first token, the deadline, and a
consumer that stops early."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from rawhttp import Handler, chunk, head, read_request

from engine.api import Engine
from engine.errors import AllTargetsFailed, DeadlineExceeded, NoRouteError, StreamInterrupted
from engine.fake import FakeServer
from engine.result import Done, StreamEvent, TextDelta
from engine.runtime.backends import Streamed, line_batches

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Settled = Callable[[], Awaitable[list[asyncio.Task[Any]]]]
Raw = Callable[[Handler], Awaitable[str]]

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 2s}
speeds:
  test: {connect: 300ms, read: 1s, pool: 300ms, retries: 1, backoff: {base: 10ms}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {price: {input: 1, output: 2}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: kn,
         models: {claude-3-5-haiku-latest: {}}}
  gem: {kind: gemini, base_url: "{fake}/gem", api_key: kg, models: {gemini-1.5-flash: {}}}
  oll: {kind: ollama, base_url: "{fake}/oll", models: {llama3.2: {}}}
groups:
  g: {strategy: priority, targets: [a/m, b/m]}
  race: {strategy: hedged, targets: [a/m, b/m], hedge_after: 10ms}
  patient: {strategy: hedged, targets: [a/m, b/m], hedge_after: 100ms}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: race}, to: race}
  - {match: {model: patient}, to: patient}
  - {match: {model: slow}, to: g, deadline: 300ms}
  - {match: {model: anth}, to: anth/claude-3-5-haiku-latest}
  - {match: {model: gem}, to: gem/gemini-1.5-flash}
  - {match: {model: oll}, to: oll/llama3.2}
"""


@pytest.fixture
def eng(make: Make) -> Engine:
    return make(CONFIG)


async def collect(eng: Engine, request: dict[str, Any]) -> list[StreamEvent]:
    return [event async for event in eng.stream(request)]


def text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_cost_of_a_stream_comes_from_the_price(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    done = (await collect(eng, ask("g")))[-1]
    assert isinstance(done, Done)
    assert done.cost == pytest.approx((done.usage.input_tokens * 1 + done.usage.output_tokens * 2) / 1e6)


@pytest.mark.parametrize("directive", ["503", "reset", "die_after=1", "malformed"])
async def test_a_failure_before_the_first_event_fails_over_or_retries(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    directive: str,
) -> None:
    fake.program("/a/", [directive, directive])
    events = await collect(eng, ask("g"))
    assert text(events) == "echo: hello there"
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "b"
    assert [a.outcome for a in done.attempts][-1] == "ok"
    assert {a.target for a in done.attempts[:-1]} == {"a/m"}


async def test_a_stream_broken_after_the_first_event_is_interrupted_not_mixed(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["die_after=3"])
    got: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in eng.stream(ask("g", "one two three four five")):
            got.append(event)
    err = info.value
    assert err.received == text(got) and err.received.startswith("echo:")
    assert [(a.target, a.outcome) for a in err.attempts] == [("a/m", "fatal")]
    assert not any(r["path"].startswith("/b/") for r in fake.requests)  # no failover after it


async def test_an_in_band_error_event_after_the_first_event_is_interrupted(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["stream_error"])
    with pytest.raises(StreamInterrupted) as info:
        await collect(eng, ask("g", "one two three four five six"))
    assert info.value.attempts[-1].error is not None
    assert info.value.attempts[-1].error.startswith("protocol")


async def test_time_to_first_token_is_recorded(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program("/a/", ["latency=100ms chunk_delay=50ms"])
    done = (await collect(eng, ask("g")))[-1]
    assert isinstance(done, Done)
    assert done.ttft is not None and 0.1 <= done.ttft < done.latency
    assert done.latency >= 0.1 + 0.05


async def test_the_deadline_bounds_a_stream_before_its_first_event(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    loop_lag: Any,
) -> None:
    fake.program("/a/", ["latency=1s"])
    async with loop_lag() as lag:
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded) as info:
            await collect(eng, ask("slow"))
        took = time.perf_counter() - start
    assert took < 0.3 + 0.1 + lag.worst  # the 300 ms deadline, a little unwinding, the machine
    assert [a.outcome for a in info.value.attempts] == ["deadline"]


async def test_the_deadline_bounds_a_stream_after_its_first_event(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
    loop_lag: Any,
) -> None:
    fake.program("/a/", ["chunk_delay=150ms"])
    async with loop_lag() as lag:
        start = time.perf_counter()
        with pytest.raises(StreamInterrupted) as info:
            await collect(eng, ask("slow", "one two three four five six"))
        took = time.perf_counter() - start
    assert took < 0.3 + 0.1 + lag.worst  # six events 150 ms apart would take 900 ms
    assert info.value.received.startswith("echo:")
    assert "deadline" in str(info.value)


async def test_time_the_consumer_spends_between_events_is_not_cancelled(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    events = []
    async for event in eng.stream(ask("slow", "one two three")):
        await asyncio.sleep(0.05)  # the consumer is slow; the deadline guards only our awaits
        events.append(event)
    assert isinstance(events[-1], Done)


async def test_a_consumer_that_stops_early_releases_the_connection(
    settled: Settled,
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    fake.program("/a/", ["chunk_delay=20ms"])
    async with eng.stream(ask("g", "one two three four five six seven")) as stream:
        async for event in stream:
            assert isinstance(event, TextDelta)
            break
    conn = next(c for c in eng._core.runtime.connections if c.name == "a")
    assert conn._backend.in_use() == 0  # type: ignore[union-attr]
    assert eng._core.runtime.inflight == 0
    assert await settled() == []


async def test_every_target_failing_before_the_first_event(eng: Engine, fake: FakeServer, ask: Ask) -> None:
    fake.program(None, ["401", "401"])
    with pytest.raises(AllTargetsFailed) as info:
        await collect(eng, ask("g"))
    assert [a.outcome for a in info.value.attempts] == ["failover", "failover"]


async def test_hedged_groups_race_to_the_first_event(
    settled: Settled, eng: Engine, fake: FakeServer, ask: Ask
) -> None:
    await collect(eng, ask("race"))  # open the connections first
    fake.program("/a/", ["latency=300ms"])
    events = await collect(eng, ask("race", "one two three"))  # a's first event: 300 ms away
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "b"
    assert text(events) == "echo: one two three"  # one provider's output only
    assert sorted((a.target, a.outcome) for a in done.attempts) == [("a/m", "cancelled"), ("b/m", "ok")]
    assert await settled() == []
    conn = next(c for c in eng._core.runtime.connections if c.name == "a")
    assert conn._backend.in_use() == 0  # type: ignore[union-attr]


async def test_a_hedged_stream_keeps_the_first_starter_even_if_it_is_slow_afterwards(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    await collect(eng, ask("patient"))  # open the connections first
    fake.program("/a/", ["chunk_delay=40ms"])  # first event after ~80ms, the last after ~240ms
    events = await collect(eng, ask("patient", "one two three"))
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "a"
    assert done.latency > 0.2
    assert [a.target for a in done.attempts] == ["a/m"]  # no hedge once it had started


def test_no_route_is_raised_when_the_stream_is_asked_for(eng: Engine, ask: Ask) -> None:
    with pytest.raises(NoRouteError):
        eng.stream(ask("nothing-matches"))


class _Chunks(Streamed):
    """A streamed body delivered in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.status, self.headers = 200, {}
        self.pieces = pieces

    async def read(self) -> bytes:
        return b"".join(self.pieces)

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    async def close(self) -> None:
        pass


async def test_line_batches_split_reads_into_lines() -> None:
    body = "data: é1\r\n\r\ndata: 2\ndata: ü3\n\ntail".encode()
    cut = body.index("é".encode()) + 1  # inside a two-byte character
    pieces = [body[:cut], body[cut : cut + 3], b"", body[cut + 3 :]]
    batches = [b async for b in line_batches(_Chunks(pieces))]
    assert all(batches)
    assert [line for b in batches for line in b] == ["data: é1", "", "data: 2", "data: ü3", "", "tail"]
    one = [b async for b in line_batches(_Chunks([body]))]
    assert one == [["data: é1", "", "data: 2", "data: ü3", ""], ["tail"]]


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: 1\r\rdata: 2\r\r"],  # bare CR line ends
        [b"data: 1\r", b"\r", b"data: 2\r", b"\rdata: 3\r"],
        [b"data: 1\r\n\r", b"\ndata: 2\r\n\r\n"],  # a CRLF split across two reads: one line end
        [b"data: 1\r", b"", b"\n\r", b"\n", b"data: 2\n\n"],  # an empty read between CR and LF
        [b"data: 1\n\ndata: 2\r\n\r\n"],  # LF and CRLF
        [b"data: 1\n\rdata: 2\r\n\n"],  # all three
    ],
)
async def test_line_batches_end_lines_at_cr_lf_or_crlf(pieces: list[bytes]) -> None:
    lines = [line for b in [b async for b in line_batches(_Chunks(pieces))] for line in b]
    want = ["data: 1", "", "data: 2", ""] + (["data: 3"] if b"data: 3" in b"".join(pieces) else [])
    assert lines == want


def _openai_events(*texts: str) -> list[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": "x",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(data).encode()

    return [*(event({"content": t}) for t in texts), event({}, "stop")]


RAW_CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: standard, deadline: 5s}
speeds:
  test: {connect: 300ms, read: 2s, pool: 300ms, retries: 0, backoff: {base: 10ms}}
providers:
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  anth: {kind: anthropic, base_url: "{raw}/v1", api_key: k, models: {claude: {}}}
  gem: {kind: gemini, base_url: "{raw}", api_key: k, models: {flash: {}}}
  oll: {kind: ollama, base_url: "{raw}", models: {llama: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [up/m, b/m]}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: up}, to: up/m}
  - {match: {model: anth}, to: anth/claude}
  - {match: {model: gem}, to: gem/flash}
  - {match: {model: oll}, to: oll/llama}
"""

# Each kind's stream of "one two", up to and including its end marker.
ENDED = {
    "up": b"".join(e + b"\n\n" for e in _openai_events("one ", "two")) + b"data: [DONE]\n\n",
    "anth": b"".join(
        b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())
        for name, data in [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {"model": "claude", "usage": {"input_tokens": 3, "output_tokens": 0}},
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one "}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two"}},
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 2},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    ),
    "gem": b"".join(
        b"data: %s\r\n\r\n" % json.dumps(data).encode()
        for data in [
            {"candidates": [{"content": {"parts": [{"text": "one "}], "role": "model"}}]},
            {
                "candidates": [
                    {"content": {"parts": [{"text": "two"}], "role": "model"}, "finishReason": "STOP"}
                ],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
            },
        ]
    ),
    "oll": b"".join(
        json.dumps(data).encode() + b"\n"
        for data in [
            {"model": "llama", "message": {"role": "assistant", "content": "one "}, "done": False},
            {"model": "llama", "message": {"role": "assistant", "content": "two"}, "done": False},
            {
                "model": "llama",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 3,
                "eval_count": 2,
            },
        ]
    ),
}


def _raw_config(url: str) -> str:
    return RAW_CONFIG.replace("{raw}", url)


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "after-the-first-event"])
@pytest.mark.parametrize("model", list(ENDED))
async def test_a_stream_whose_body_never_ends_after_its_end_marker_is_done_at_once(
    raw: Raw,
    make: Make,
    ask: Ask,
    model: str,
    split: bool,
) -> None:
    body = ENDED[model]
    first_seen = asyncio.Event()
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        content_type = "application/x-ndjson" if model == "oll" else "text/event-stream"
        writer.write(head(200, {"content-type": content_type, "transfer-encoding": "chunked"}))
        cut = body.index(b"two") - 4 if split else len(body)
        writer.write(chunk(body[:cut]))
        if split:
            await first_seen.wait()
            writer.write(chunk(body[cut:]))
        await writer.drain()
        await asyncio.Event().wait()  # the chunked body's terminator never comes

    eng = make(_raw_config(await raw(handler)))
    events = []
    async for event in eng.stream(ask(model)):  # a read timeout (2s) would interrupt it
        events.append(event)
        first_seen.set()
    assert text(events) == "one two"
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert [(a.outcome, a.error) for a in done.attempts] == [("ok", None)]
    assert eng.health()[model].failures == 0
    again = await collect(eng, ask(model))  # the half-read connection was dropped, not reused
    assert text(again) == "one two" and connections == 2


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "two-reads"])
@pytest.mark.parametrize("model", list(ENDED))
async def test_the_read_with_the_end_marker_comes_with_the_done(
    raw: Raw, make: Make, ask: Ask, model: str, split: bool
) -> None:
    body = ENDED[model]
    first_seen = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        cut = body.index(b"two") - 4 if split else len(body)
        writer.write(chunk(body[:cut]))
        if split:
            await first_seen.wait()
            writer.write(chunk(body[cut:]))
        writer.write(chunk(b""))
        await writer.drain()

    stream = make(_raw_config(await raw(handler))).stream(ask(model))
    batches = []
    while batch := await stream.batch():
        batches.append([type(e).__name__ for e in batch])
        first_seen.set()
    got = [["TextDelta"], ["TextDelta", "Done"]] if split else [["TextDelta", "TextDelta", "Done"]]
    assert [[n for n in b if n != "NativeEvent"] for b in batches] == got


@pytest.mark.parametrize("ending", [b"\r", b"\r\n", b"\n"], ids=["CR", "CRLF", "LF"])
async def test_sse_lines_may_end_in_a_bare_cr(raw: Raw, make: Make, ask: Ask, ending: bytes) -> None:
    events = [e + ending + ending for e in _openai_events("one ", "two")] + [
        b"data: [DONE]" + ending + ending
    ]
    pieces = [b"".join(events[:1])[:-1], b"".join(events)[len(b"".join(events[:1])) - 1 :]]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        for piece in pieces:  # the first event's last line end split across two chunks
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(chunk(b""))

    events_got = await collect(make(_raw_config(await raw(handler))), ask("up"))
    assert text(events_got) == "one two" and isinstance(events_got[-1], Done)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "error", "message": "upstream overloaded"}',
        b'{"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded"}}',
        b"upstream overloaded",
    ],
    ids=["message", "anthropic-shape", "plain-text"],
)
@pytest.mark.parametrize("after_first", [False, True], ids=["before", "after"])
async def test_an_error_event_without_an_error_key_is_not_dropped(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    data: bytes,
    after_first: bool,
) -> None:
    lead = _openai_events("one ")[0] + b"\n\n" if after_first else b""
    body = (
        lead
        + b"event: error\ndata: "
        + data
        + b"\n\n"
        + b"".join(e + b"\n\n" for e in _openai_events("never"))
        + b"data: [DONE]\n\n"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            head(200, {"content-type": "text/event-stream", "content-length": str(len(body))}) + body
        )
        await writer.drain()

    eng = make(_raw_config(await raw(handler)))
    if after_first:
        got: list[StreamEvent] = []
        with pytest.raises(StreamInterrupted, match="upstream overloaded") as info:
            async for event in eng.stream(ask("g")):
                got.append(event)
        assert info.value.received == "one " == text(got)
        return
    events = await collect(eng, ask("g"))  # before the first event: fails over
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "b"
    error = done.attempts[0].error or ""
    assert error.startswith("protocol: ") and "upstream overloaded" in error


async def test_events_of_one_read_arrive_in_order_and_an_error_in_it_interrupts(
    eng: Engine,
    fake: FakeServer,
    ask: Ask,
) -> None:
    # the fake writes its events back to back: several arrive per read, served from a buffer
    events = await collect(eng, ask("g", "a b c d e f"))
    assert text(events) == "echo: a b c d e f"
    assert sum(isinstance(e, TextDelta) for e in events) >= 6
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "a"
    # an in-band error in the same read as the first event still comes after it: no failover
    fake.program("/a/", ["stream_error chunks=2"])
    got: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in eng.stream(ask("g", "one two three four")):
            got.append(event)
    assert got and info.value.received == text(got)
    assert not any(r["path"].startswith("/b/") for r in fake.requests)
