"""Anthropic Messages: URL, headers, response and stream parsing, listings, errors.

Fixtures mirror the examples in Anthropic's API reference (messages, streaming, tool use, models).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.providers import WireError, get_kind
from engine.providers.base import StreamParser
from engine.result import (
    NativeEvent,
    ReasoningBlock,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

KIND = get_kind("anthropic")

MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}

TOOL_USE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-20250514",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
        {"type": "text", "text": "I'll check the weather in San Francisco for you."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 57,
        "service_tier": "standard",
    },
}

STREAM = """\
event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-20250514", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " wörld \\"!\\"\\n"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""  # noqa: E501

TOOL_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-20250514","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I need the weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisco, CA\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":472,"cache_read_input_tokens":30,"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501


def feed(parser: StreamParser, transcript: str) -> list[Any]:
    out: list[Any] = []
    for line in transcript.split("\n"):
        out += parser.feed(line)
    return out


def test_url_and_headers() -> None:
    assert (
        KIND.url("https://api.anthropic.com/v1/", "claude-3-5-haiku-latest", True)
        == "https://api.anthropic.com/v1/messages"
    )
    assert KIND.auth_headers("sk-ant-1") == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-1",
    }
    assert "x-api-key" not in KIND.auth_headers(None)
    assert "x-api-key" not in KIND.auth_headers("")


def test_parse_text() -> None:
    parsed = KIND.parse(MESSAGE)
    assert parsed.text == "Hi! My name is Claude."
    assert parsed.finish_reason == "stop"
    assert parsed.usage == Usage(2095, 503)
    assert parsed.tool_calls == ()
    assert parsed.model == "claude-sonnet-4-20250514"


def test_parse_tool_use_keeps_thinking_apart_and_counts_cached_input() -> None:
    parsed = KIND.parse(TOOL_USE)
    assert parsed.text == "I'll check the weather in San Francisco for you."
    assert parsed.finish_reason == "tool_calls"
    assert parsed.tool_calls == (
        ToolCall(
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            '{"location":"San Francisco, CA","unit":"celsius"}',
        ),
        ToolCall("toolu_02", "get_time", "{}"),
    )
    assert parsed.usage == Usage(1110, 57, cache_read_tokens=1000, cache_write_tokens=100)
    assert parsed.reasoning == (ReasoningBlock("anthropic", "The user wants weather.", "EqQBCgIYAhIM"),)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, None),
    ],
)
def test_finish_reasons(given: str | None, expected: str | None) -> None:
    assert KIND.parse({**MESSAGE, "stop_reason": given}).finish_reason == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"content": None},
        {"content": {}},
        {"content": ["x"]},
        {"content": [{"type": "text", "text": 5}]},
        {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]},
        {"content": [], "stop_reason": 1},
        {"content": [], "usage": []},
        {"content": [], "usage": {"input_tokens": -1}},
        {"content": [], "model": ["x"]},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ],
)
def test_malformed_bodies_raise_wire_error(body: Any) -> None:
    with pytest.raises(WireError):
        KIND.parse(body)


def test_stream_text_usage_and_done() -> None:
    parser = KIND.stream_parser()
    start, *events, end = feed(parser, STREAM)
    # the provider's message_start comes with the first event (never alone: no early answer)
    assert type(start) is NativeEvent and start.data["type"] == "message_start"
    assert start.data["message"]["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert events == [TextDelta("Hello"), TextDelta(' wörld "!"\n')]
    assert type(end) is NativeEvent and end.data["type"] == "message_delta"  # the provider's own end
    assert parser.finish_reason == "stop"
    assert parser.usage == Usage(25, 15)
    assert parser.model == "claude-opus-4-20250514"
    assert parser.done is True


def test_stream_tool_use_numbers_calls_not_blocks() -> None:
    parser = KIND.stream_parser()
    assert feed(parser, TOOL_STREAM)[1:-1] == [  # [0]: message_start
        ReasoningDelta("I need the weather."),
        ReasoningDelta("", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"),
        TextDelta("Okay, let's check."),
        ToolCallDelta(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"location":'),
        ToolCallDelta(0, None, None, ' "San Francisco, CA"}'),
        ToolCallDelta(1, "toolu_02", "get_time", ""),
        ToolCallDelta(1, None, None, "{}"),
    ]
    assert parser.finish_reason == "tool_calls"
    assert parser.usage == Usage(502, 89, cache_read_tokens=30)
    assert parser.reasoning == (
        ReasoningBlock(
            "anthropic", "I need the weather.", "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
        ),
    )
    assert parser.done is True


def test_stream_usage_of_message_delta_replaces_message_start() -> None:
    # message_delta's counts are cumulative and final, even when smaller (as a real stream with
    # prompt caching sends them); the counts it leaves out keep message_start's
    start = (
        '"usage": {"input_tokens": 25, "output_tokens": 1}',
        '"usage": {"input_tokens": 100, "cache_read_input_tokens": 55096, '
        '"cache_creation_input_tokens": 7, "output_tokens": 1}',
    )
    parser = KIND.stream_parser()
    feed(
        parser,
        STREAM.replace(*start).replace(
            '"usage": {"output_tokens": 15}',
            '"usage": {"input_tokens": 181, "cache_read_input_tokens": 0, "output_tokens": 8}',
        ),
    )
    assert parser.usage == Usage(188, 8, cache_read_tokens=0, cache_write_tokens=7)


def test_truncated_stream_is_not_done() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM[: STREAM.index("event: message_stop")])
    assert parser.done is False
    assert parser.finish_reason == "stop"
    parser = KIND.stream_parser()
    feed(parser, STREAM[:400])
    assert parser.done is False


def test_in_band_error_event_raises() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM.split("\n\n")[0] + "\n\n")
    parser.feed("event: error")
    with pytest.raises(WireError, match="overloaded_error: Overloaded"):
        parser.feed('data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}')


@pytest.mark.parametrize(
    "line",
    [
        "data: 1",
        'data: {"type": "content_block_delta", "index": 0, "delta": "x"}',
        'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 1}}',
        'data: {"type": "content_block_start", "index": "0", "content_block": {"type": "tool_use"}}',
        'data: {"type": "message_start", "message": []}',
        'data: {"type": "message_delta", "delta": {}, "usage": {"output_tokens": "many"}}',
    ],
)
def test_malformed_stream_lines_raise(line: str) -> None:
    with pytest.raises(WireError):
        KIND.stream_parser().feed(line)


def test_models() -> None:
    assert KIND.models_url("https://api.anthropic.com/v1") == "https://api.anthropic.com/v1/models?limit=1000"
    listing = {
        "data": [
            {
                "type": "model",
                "id": "claude-sonnet-4-20250514",
                "display_name": "Claude Sonnet 4",
                "created_at": "2025-05-22T00:00:00Z",
            },
            {
                "type": "model",
                "id": "claude-3-5-haiku-20241022",
                "display_name": "Claude Haiku 3.5",
                "created_at": "2024-10-22T00:00:00Z",
            },
        ],
        "has_more": False,
        "first_id": "claude-sonnet-4-20250514",
        "last_id": "claude-3-5-haiku-20241022",
    }
    assert KIND.parse_models(listing) == ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]
    with pytest.raises(WireError):
        KIND.parse_models([])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": "model: claude-x"},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
            },
            "not_found_error: model: claude-x",
        ),
        (
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            "authentication_error: invalid x-api-key",
        ),
    ],
)
def test_error_message(body: Any, message: str) -> None:
    assert KIND.error_message(body) == message
