"""An in-band error event after a stream's first event: every delta that came before it reaches the
caller, in order, and ``StreamInterrupted.received``, whether the error arrived in the same network
read as those deltas or in a later one; before any delta it is a failed try that fails over.

Raw upstreams send each kind's own error event shape, in the read of the deltas or after the
first of them was received. (The fake's ``stream_error``, in one read and in one read per event,
is every kind's contract: tests/providers/test_contract.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rawhttp import Handler, chunk, head, read_request, reply

from engine.api import Engine
from engine.errors import StreamInterrupted
from engine.fake import FakeServer
from engine.result import Done, StreamEvent, TextDelta

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Raw = Callable[[Handler], Awaitable[str]]

KINDS = {"openai": "a", "anthropic": "anth", "gemini": "gem", "ollama": "oll"}


def text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def interrupted(eng: Engine, request: dict[str, Any]) -> tuple[list[StreamEvent], str]:
    """The events a broken stream yielded, and the text its ``StreamInterrupted`` received."""
    got: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in eng.stream(request):
            got.append(event)
    assert not any(isinstance(e, Done) for e in got)
    assert info.value.attempts[-1].outcome == "fatal"
    return got, info.value.received


# -- raw upstreams, each kind's own error event ------------------------------------------------

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 500ms, retries: 0, backoff: {base: 10ms}}
providers:
  openai: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  anthropic: {kind: anthropic, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  gemini: {kind: gemini, base_url: "{raw}", api_key: k, models: {m: {}}}
  ollama: {kind: ollama, base_url: "{raw}", models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [openai/m, b/m]}
routes:
  - {match: {model: g}, to: g}
  - {match: {model: openai}, to: openai/m}
  - {match: {model: anthropic}, to: anthropic/m}
  - {match: {model: gemini}, to: gemini/m}
  - {match: {model: ollama}, to: ollama/m}
"""

TEXTS = ["1", "\n2", "\n3"]


def _sse(data: Any, event: str | None = None) -> bytes:
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {json.dumps(data)}\n\n".encode()


def deltas(kind: str, texts: list[str]) -> bytes:
    """The start of a stream of ``kind`` carrying ``texts``: no end, no finish."""
    if kind == "openai":
        return b"".join(
            _sse(
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}],
                }
            )
            for t in texts
        )
    if kind == "anthropic":
        start = _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                },
            },
            "message_start",
        )
        block = _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        return (
            start
            + block
            + b"".join(
                _sse(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
                    "content_block_delta",
                )
                for t in texts
            )
        )
    if kind == "gemini":
        return b"".join(
            _sse(
                {
                    "candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}],
                    "modelVersion": "m",
                }
            )
            for t in texts
        )
    return b"".join(
        json.dumps(
            {
                "model": "m",
                "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": t},
                "done": False,
            }
        ).encode()
        + b"\n"
        for t in texts
    )


def error_event(kind: str) -> bytes:
    """``kind``'s in-band error, as its API sends it inside an HTTP 200 stream."""
    if kind == "openai":  # OpenAI-compatible servers (Groq, vLLM) name the event
        return _sse({"error": {"message": "Overloaded", "type": "server_error"}}, "error")
    if kind == "anthropic":
        return _sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
        )
    if kind == "gemini":
        return _sse({"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}})
    return json.dumps({"error": "Overloaded"}).encode() + b"\n"


def content_type(kind: str) -> str:
    return "application/x-ndjson" if kind == "ollama" else "text/event-stream"


def one_read(body: bytes, kind: str) -> Handler:
    """Headers and the whole body in one write: the engine reads it at once."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply(body, headers={"content-type": content_type(kind)}))
        await writer.drain()
        await reader.read()  # until the engine hangs up

    return handler


def two_reads(first: bytes, then: bytes, kind: str, seen: asyncio.Event) -> Handler:
    """``first``, then (once the caller has an event of it, so in a later read) ``then``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            head(200, {"content-type": content_type(kind), "transfer-encoding": "chunked"}) + chunk(first)
        )
        await writer.drain()
        await seen.wait()
        writer.write(chunk(then))
        await writer.drain()
        await reader.read()

    return handler


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_in_the_read_of_the_deltas_keeps_them(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    kind: str,
) -> None:
    url = await raw(one_read(deltas(kind, TEXTS) + error_event(kind), kind))
    eng = make(CONFIG.replace("{raw}", url).replace("{fake}", fake.url))
    got, received = await interrupted(eng, ask(kind))
    assert [e.text for e in got if isinstance(e, TextDelta)] == TEXTS
    assert received == "1\n2\n3"


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_in_a_later_read_keeps_the_deltas_of_both_reads(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    kind: str,
) -> None:
    seen = asyncio.Event()
    later = deltas(kind, ["\n4"])
    if kind == "anthropic":  # the later read goes on with the same content block
        later = later[later.index(b"event: content_block_delta") :]
    url = await raw(two_reads(deltas(kind, TEXTS), later + error_event(kind), kind, seen))
    eng = make(CONFIG.replace("{raw}", url).replace("{fake}", fake.url))
    got: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted, match="Overloaded") as info:
        async for event in eng.stream(ask(kind)):
            got.append(event)
            seen.set()
    assert text(got) == info.value.received == "1\n2\n3\n4"


async def test_an_error_before_any_delta_still_fails_over(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
) -> None:
    role = _sse(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    url = await raw(one_read(role + error_event("openai"), "openai"))
    eng = make(CONFIG.replace("{raw}", url).replace("{fake}", fake.url))
    events = [e async for e in eng.stream(ask("g", "x y"))]
    done = events[-1]
    assert isinstance(done, Done) and done.provider == "b" and text(events) == "echo: x y"
    assert [(a.target, a.outcome) for a in done.attempts] == [("openai/m", "failover"), ("b/m", "ok")]
