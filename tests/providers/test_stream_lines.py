"""``StreamParser.lines`` (a network read's lines in one call, SSE's plain events on a fast path)
gives what ``feed`` line by line gives: the same events, the same error after the same events,
the same end marker, usage and finish reason, whatever the framing and wherever reads split;
``loads`` (orjson when installed) accepts what the standard library accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.providers import get_kind
from engine.providers.base import StreamParser, WireError, loads

CHUNK = '{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}'
STREAMS: dict[str, list[str]] = {
    "plain": [f"data: {CHUNK % w}\n\n" for w in ("a", "b", "c")] + ["data: [DONE]\n\n"],
    "no space, comments, ids": [": ping\n", "id: 1\n", f"data:{CHUNK % 'x'}\n\n", "retry: 5\n\n"],
    "multi-line data": ['data: {"choices":[{"index":0,\n', 'data: "delta":{"content":"y"}}]}\n\n'],
    "NaN usage": ['data: {"choices":[],"usage":{"prompt_tokens":1,"x":NaN}}\n\n', "data: [DONE]\n\n"],
    "lone surrogate": [f"data: {CHUNK % chr(92) + 'ud800'}\n\n"],
    "error event": [f"data: {CHUNK % 'a'}\n\n", "event: error\n", 'data: {"message":"boom"}\n\n'],
    "plain-text error": ["event: error\n", "data: overloaded\n\n"],
    "error field": [f"data: {CHUNK % 'a'}\n\n", 'data: {"error":{"message":"quota"}}\n\n'],
    "broken then more": [f"data: {CHUNK % 'a'}\n\n", "data: {nope\n\n", f"data: {CHUNK % 'b'}\n\n"],
    "not an object": [f"data: {CHUNK % 'a'}\n\n", "data: {}\n\n", "data: [1]\n\n"],
    "bad delta": ['data: {"choices":[{"delta":[]}]}\n\n'],
    "after done": [f"data: {CHUNK % 'a'}\n\n", "data: [DONE]\n\n", f"data: {CHUNK % 'z'}\n\n"],
    "anthropic": [
        'event: message_start\ndata: {"type":"message_start","message":{"model":"c",'
        '"usage":{"input_tokens":3}}}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n',
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"hi"}}\n\n',
        'event: ping\ndata: {"type": "ping"}\n\n',
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        '"usage":{"output_tokens":2}}\n\n',
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ],
    "gemini": [
        'data: {"candidates":[{"content":{"parts":[{"text":"g"}]},"finishReason":"STOP"}],'
        '"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":1}}\n\n'
    ],
}


def _run(parser: StreamParser, reads: list[list[str]], batched: bool) -> tuple[Any, ...]:
    events: list[Any] = []
    error = None
    for lines in reads:
        if batched:
            got, broke = parser.lines(lines)
            events += got
            if broke is not None:
                error = str(broke)
                break
        else:
            try:
                for line in lines:
                    events += parser.feed(line)
            except WireError as exc:
                error = str(exc)
                break
    return events, error, parser.done, parser.usage, parser.finish_reason, parser.model


def _reads(body: str, cut: int) -> list[list[str]]:
    """The body's lines as line_batches hands them out when a read ends every ``cut`` lines."""
    lines = body.split("\n")
    lines = lines[:-1] if lines and lines[-1] == "" else lines
    return [lines[i : i + cut] for i in range(0, len(lines), cut)] or [[]]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("cut", [1, 2, 3, 1000])
def test_lines_is_feed_line_by_line(kind: str, name: str, cut: int) -> None:
    reads = _reads("".join(STREAMS[name]), cut)
    make = get_kind(kind).stream_parser
    assert _run(make(), reads, batched=True) == _run(make(), reads, batched=False)


def test_lines_fast_path_is_taken_and_keeps_order() -> None:
    parser = get_kind("openai").stream_parser()
    events, broke = parser.lines(_reads("".join(STREAMS["error event"]), 1000)[0])
    assert [e.text for e in events] == ["a"]
    assert broke is not None and "boom" in str(broke)


@pytest.mark.parametrize(
    "text",
    ['{"a":NaN,"b":-Infinity}', '"\\ud800"', '{"a":1e400}', '{"a":[1,2.5,"x",null,true]}', " 3 "],
)
def test_loads_accepts_what_the_stdlib_accepts(text: str) -> None:
    assert repr(loads(text)) == repr(json.loads(text))
    assert repr(loads(text.encode("utf-16"))) == repr(json.loads(text.encode("utf-16")))


@pytest.mark.parametrize("text", ["{nope", "", '{"a":1} x', "[1,]", b"\xff{}"])
def test_loads_refuses_what_the_stdlib_refuses(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads(text)
