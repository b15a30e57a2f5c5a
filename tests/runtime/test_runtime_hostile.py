"""Hostile upstreams, over raw loopback sockets (what the fake provider cannot do): compressed bodies
inflating past ``max_response`` (whole, streamed, listings), oversized plain bodies, huge error
bodies. Each must end in a bounded, typed outcome while the event loop keeps serving others."""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rawhttp import Handler, chunk, head, read_request, reply

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError, StreamInterrupted
from engine.fake import FakeServer
from engine.result import Done, TextDelta

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Raw = Callable[[Handler], Awaitable[str]]

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 500ms, retries: 0, backoff: {base: 10ms}}
providers:
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}MAX}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [up/m, b/m]}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: up}, to: up/m}
  - {match: {model: b}, to: b/m}
"""

ANSWER = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
).encode()


def sse(*texts: str, done: bool = True) -> bytes:
    """An OpenAI stream of ``texts``, a finish chunk, and (``done``) ``data: [DONE]``."""

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": "x",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    out = b"".join(event({"content": t}) for t in texts) + event({}, "stop")
    return out + (b"data: [DONE]\n\n" if done else b"")


def config(url: str, max_response: str | None = None) -> str:
    extra = f", max_response: {max_response}" if max_response else ""
    return CONFIG.replace("{raw}", url).replace("MAX", extra)


def compress(data: bytes, encoding: str = "gzip", level: int = 6) -> bytes:
    wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15}[encoding]
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


@functools.cache
def zeros_gzip(mib: int) -> bytes:
    """``mib`` MiB of zero bytes, gzip-compressed (100 MiB: ~450 KB)."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(c.compress(block) for _ in range(mib)), c.flush()])


def answering(*bodies: bytes) -> Handler:
    """A keep-alive upstream answering each request with the next of ``bodies`` (the last
    one repeats)."""
    given = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal given
        while await read_request(reader) is not None:
            writer.write(bodies[min(given, len(bodies) - 1)])
            given += 1
            await writer.drain()

    return handler


def encoded(body: bytes, encoding: str, content_type: str = "application/json") -> bytes:
    wire = "deflate" if encoding == "raw-deflate" else encoding
    return reply(compress(body, encoding), headers={"content-type": content_type, "content-encoding": wire})


# -- compressed answers are inflated here -------------------------------------------------------


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_answers_and_streams_are_inflated(
    raw: Raw,
    make: Make,
    ask: Ask,
    transport: str,
    encoding: str,
) -> None:
    url = await raw(
        answering(encoded(ANSWER, encoding), encoded(sse("one ", "two"), encoding, "text/event-stream"))
    )
    eng = make(config(url), transport=transport)
    assert (await eng.route(ask("up"))).text == "hi"
    events = [e async for e in eng.stream(ask("up"))]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two"
    assert isinstance(events[-1], Done)


async def test_a_chunked_gzip_stream_is_inflated_as_it_arrives(raw: Raw, make: Make, ask: Ask) -> None:
    body = compress(sse(*(f"w{i} " for i in range(200))))
    pieces = [body[i : i + 97] for i in range(0, len(body), 97)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            head(
                200,
                {
                    "content-type": "text/event-stream",
                    "content-encoding": "gzip",
                    "transfer-encoding": "chunked",
                },
            )
        )
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
        writer.write(chunk(b""))

    eng = make(config(await raw(handler)))
    events = [e async for e in eng.stream(ask("up"))]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(
        f"w{i} " for i in range(200)
    )


async def test_an_encoding_that_was_not_asked_for_is_a_protocol_error(raw: Raw, make: Make, ask: Ask) -> None:
    url = await raw(answering(reply(b"\x0b\x01\x80hi", headers={"content-encoding": "br"})))
    with pytest.raises(AllTargetsFailed) as info:
        await make(config(url)).route(ask("up"))
    assert info.value.attempts[0].error == "protocol: unsupported content-encoding 'br'"


async def test_a_corrupt_gzip_body_is_a_protocol_error(raw: Raw, make: Make, ask: Ask) -> None:
    url = await raw(answering(reply(b"\x1f\x8b not gzip at all", headers={"content-encoding": "gzip"})))
    eng = make(config(url))
    resp = await eng.route(ask("g"))
    assert resp.provider == "b"
    assert (resp.attempts[0].error or "").startswith("protocol: body is not valid gzip")


# -- max_response -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_inflating_past_max_response_fails_over(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    transport: str,
    encoding: str,
) -> None:
    bomb = b'{"x": "' + bytes(4 << 20) + b'"}'  # 4 MiB inflated, ~4 KB on the wire
    url = await raw(answering(encoded(bomb, encoding)))
    eng = make(config(url, "1MiB"), transport=transport)
    resp = await eng.route(ask("g"))
    assert resp.provider == "b"
    assert [(a.target, a.outcome, a.error) for a in resp.attempts] == [
        ("up/m", "failover", "protocol: response larger than max_response (1MiB)"),
        ("b/m", "ok", None),
    ]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_a_gzip_stream_inflating_past_max_response_fails_over_before_its_first_event(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    transport: str,
) -> None:
    bomb = b": " + b"x" * (4 << 20) + b"\n\n" + sse("never")  # one 4 MiB comment line first
    url = await raw(answering(encoded(bomb, "gzip", "text/event-stream")))
    eng = make(config(url, "1MiB"), transport=transport)
    events = [e async for e in eng.stream(ask("g"))]
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "b"
    assert done.attempts[0].error == "protocol: response larger than max_response (1MiB)"


async def test_a_stream_past_max_response_after_its_first_event_is_interrupted(
    raw: Raw,
    make: Make,
    ask: Ask,
) -> None:
    first_seen = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        writer.write(chunk(sse("first ", done=False)))
        await first_seen.wait()
        for _ in range(20):  # 1 MiB more of events, unending
            writer.write(chunk(sse(*["word "] * 300, done=False)[:65536]))
            await writer.drain()
        await asyncio.Event().wait()

    eng = make(config(await raw(handler), "512KiB"))
    received = []
    with pytest.raises(StreamInterrupted, match=r"larger than max_response \(512KiB\)") as info:
        async for event in eng.stream(ask("up")):
            received.append(event)
            first_seen.set()
    assert info.value.received.startswith("first ") and received


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_a_plain_answer_with_a_content_length_past_max_response_fails_before_reading(
    raw: Raw,
    make: Make,
    ask: Ask,
    transport: str,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(200, {"content-type": "application/json", "content-length": str(1 << 30)}))
        await writer.drain()
        await asyncio.Event().wait()  # the body never comes: reading it would time out

    eng = make(config(await raw(handler), "1MiB"), transport=transport)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("up"))
    assert info.value.attempts[0].error == "protocol: response larger than max_response (1MiB)"


async def test_a_plain_chunked_answer_is_counted_while_it_is_read(raw: Raw, make: Make, ask: Ask) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(200, {"content-type": "application/json", "transfer-encoding": "chunked"}))
        for _ in range(64):  # 4 MiB in 64 KiB chunks, no length given
            writer.write(chunk(b" " * 65536))
            await writer.drain()
        writer.write(chunk(ANSWER) + chunk(b""))

    eng = make(config(await raw(handler), "1MiB"))
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("up"))
    assert info.value.attempts[0].error == "protocol: response larger than max_response (1MiB)"


async def test_a_model_listing_past_max_response_is_a_provider_error(raw: Raw, make: Make) -> None:
    url = await raw(answering(encoded(b'{"data": "' + bytes(4 << 20) + b'"}', "gzip")))
    eng = make(config(url, "1MiB"))
    with pytest.raises(ProviderError, match=r"larger than max_response \(1MiB\)"):
        await eng.list_models("up")
    assert (await eng.warmup())["up"] == "protocol: response larger than max_response (1MiB)"


async def test_a_gzip_bomb_under_the_default_cap_fails_while_the_loop_serves_others(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
) -> None:
    bomb = zeros_gzip(100)  # 100 MiB of zeros in ~450 KB
    sent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            head(
                200,
                {
                    "content-type": "application/json",
                    "content-encoding": "gzip",
                    "content-length": str(len(bomb)),
                },
            )
        )
        writer.write(bomb)
        await writer.drain()
        sent.set()
        await asyncio.Event().wait()

    eng = make(config(await raw(handler)))  # max_response: the default, 32 MiB
    finished: list[str] = []
    big = asyncio.ensure_future(eng.route(ask("up")))
    big.add_done_callback(lambda _: finished.append("bomb"))
    await sent.wait()
    small = asyncio.ensure_future(eng.route(ask("b")))
    small.add_done_callback(lambda _: finished.append("other"))
    with pytest.raises(AllTargetsFailed) as info:
        await big
    assert info.value.attempts[0].error == "protocol: response larger than max_response (32MiB)"
    assert (await small).provider == "b"
    assert finished == ["other", "bomb"]  # answered while the bomb was being inflated


async def test_only_the_start_of_a_huge_error_body_is_read(
    raw: Raw, make: Make, fake: FakeServer, ask: Ask
) -> None:
    whole: list[bool] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        message = b'{"error": {"message": "overloaded", "type": "server"}}'
        size = 64 << 20
        writer.write(head(503, {"content-type": "application/json", "content-length": str(size)}) + message)
        try:
            for _ in range(size // 65536):
                writer.write(b" " * 65536)
                await writer.drain()
        except ConnectionError:
            whole.append(False)
        else:
            whole.append(True)

    eng = make(config(await raw(handler)))
    resp = await eng.route(ask("g"))
    assert resp.provider == "b"
    assert resp.attempts[0].status == 503 and resp.attempts[0].outcome == "failover"
    for _ in range(100):  # the upstream learns the engine hung up at its next write
        if whole:
            break
        await asyncio.sleep(0.01)
    assert whole == [False]


# -- an upstream that answers twice --------------------------------------------------------------


def answer(text: str) -> bytes:
    body = json.loads(ANSWER)
    body["choices"][0]["message"]["content"] = text
    return reply(json.dumps(body).encode())


@pytest.mark.parametrize("late", [False, True], ids=["at-once", "while-idle"])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_an_answer_sent_twice_on_a_keep_alive_connection_is_nobody_elses_answer(
    raw: Raw,
    make: Make,
    ask: Ask,
    transport: str,
    late: bool,
) -> None:
    asked = 0
    copied = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal asked
        while await read_request(reader) is not None:
            asked += 1
            copied.clear()
            writer.write(answer(f"answer {asked}"))
            if late:  # the copy comes while the connection idles in the pool
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(answer(f"answer {asked}"))  # a broken proxy: every answer twice
            await writer.drain()
            copied.set()

    eng = make(config(await raw(handler)), transport=transport)
    for n in (1, 2, 3):
        resp = await eng.route(ask("up"))
        assert resp.text == f"answer {n}" and asked == n
        await copied.wait()
        await asyncio.sleep(0.01)  # the copy reaches the idle connection


# -- an upstream that sets cookies ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_a_cookie_an_upstream_sets_is_never_sent_back(
    raw: Raw, make: Make, ask: Ask, transport: str
) -> None:
    """One pooled session serves every caller: a cookie kept from one answer would go with the
    next caller's request (a session or affinity cookie, one tenant's to another)."""
    sent: list[dict[str, str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            sent.append(request[2])
            writer.write(reply(ANSWER, headers={"set-cookie": f"session=tenant{len(sent)}; Path=/"}))
            await writer.drain()

    url = (await raw(handler)).replace("127.0.0.1", "localhost")  # (jars drop an IP host's cookies)
    eng = make(config(url), transport=transport)
    for _ in range(3):
        assert (await eng.route(ask("up"))).text == "hi"
    assert len(sent) == 3
    assert all("cookie" not in headers for headers in sent), sent


# -- listings and warm-up are bounded as a whole --------------------------------------------------

TRICKLE = """\
version: 1
defaults: {speed: short, breaker: none, deadline: 5s}
speeds:
  short: {connect: 100ms, read: 250ms, pool: 100ms, retries: 0, backoff: {base: 10ms}}
providers:
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
routes:
  - {match: {}, to: up/m}
"""


def trickling(answer: bytes, at_once: int = 0) -> Handler:
    """An upstream that sends the first ``at_once`` bytes of ``answer``, then the rest one byte
    every 100 ms: never slower than the read timeout (250 ms), never done in time."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer[:at_once])
        for i in range(at_once, len(answer)):
            writer.write(answer[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.1)

    return handler


@pytest.mark.parametrize("headers_first", [False, True], ids=["all-trickled", "body-trickled"])
async def test_a_trickled_listing_times_out_as_a_whole(raw: Raw, make: Make, headers_first: bool) -> None:
    listing = reply(json.dumps({"data": [{"id": f"model-{i}"} for i in range(50)]}).encode())
    at_once = listing.index(b"\r\n\r\n") + 4 if headers_first else 0
    eng = make(TRICKLE.replace("{raw}", await raw(trickling(listing, at_once))))
    with pytest.raises(ProviderError, match="up: model listing timed out") as info:
        await asyncio.wait_for(eng.list_models("up"), 30)  # (a bound for the test itself)
    assert info.value.status is None and "timeout" in info.value.body
    assert info.value.attempts[0].kind == "timeout"
    assert info.value.attempts[0].detail == "no whole answer within 450ms"
    result = await asyncio.wait_for(eng.warmup(), 30)
    assert result["up"] == "timeout: no whole answer within 450ms"  # pool + connect + read
