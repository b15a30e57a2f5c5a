"""Ollama /api/chat: URL, headers, response and NDJSON stream parsing, listings, errors.

Fixtures mirror the examples in Ollama's docs/api.md (chat, streaming, tools, tags).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.providers import WireError, get_kind
from engine.providers.base import StreamParser
from engine.result import TextDelta, ToolCallDelta, Usage

KIND = get_kind("ollama")

CHAT = {
    "model": "llama3.2",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done_reason": "stop",
    "done": True,
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}

TOOLS = {
    "model": "llama3.2",
    "created_at": "2024-07-22T20:33:28.123648Z",
    "message": {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "function": {
                    "name": "get_current_weather",
                    "arguments": {"format": "celsius", "location": "Paris, FR"},
                }
            },
            {"id": "call_x1", "function": {"index": 1, "name": "get_time", "arguments": {}}},
        ],
    },
    "done_reason": "stop",
    "done": True,
    "total_duration": 885095291,
    "load_duration": 3753500,
    "prompt_eval_count": 122,
    "prompt_eval_duration": 328493000,
    "eval_count": 33,
    "eval_duration": 552222000,
}

STREAM = """\
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The"},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" sky \\"is\\"\\n"},"done":false}

{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}
"""  # noqa: E501

TOOL_STREAM = """\
{"model":"qwen3","created_at":"2025-05-27T22:54:57.641643Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Toronto"}}}]},"done":false}
{"model":"qwen3","created_at":"2025-05-27T22:54:57.663117Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1,"prompt_eval_count":200,"eval_count":20}
"""


def feed(parser: StreamParser, transcript: str) -> list[Any]:
    out: list[Any] = []
    for line in transcript.split("\n"):
        out += parser.feed(line)
    return out


def test_url_and_headers() -> None:
    assert KIND.url("http://localhost:11434/", "llama3.2", True) == "http://localhost:11434/api/chat"
    assert KIND.auth_headers(None) == {"content-type": "application/json"}
    assert KIND.auth_headers("proxy-key") == {
        "content-type": "application/json",
        "Authorization": "Bearer proxy-key",
    }
    assert KIND.stream_format == "ndjson"


def test_parse_text() -> None:
    parsed = KIND.parse(CHAT)
    assert parsed.text == "Hello! How are you today?"
    assert parsed.finish_reason == "stop"
    assert parsed.usage == Usage(26, 298)
    assert parsed.model == "llama3.2"
    assert parsed.tool_calls == ()


def test_parse_tool_calls() -> None:
    parsed = KIND.parse(TOOLS)
    assert parsed.finish_reason == "tool_calls"
    first, second = parsed.tool_calls
    assert first.id.startswith("call_")
    assert (first.name, first.arguments) == (
        "get_current_weather",
        '{"format":"celsius","location":"Paris, FR"}',
    )
    assert (second.id, second.name, second.arguments) == ("call_x1", "get_time", "{}")
    assert parsed.usage == Usage(122, 33)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("load", "stop"),
        ("unload", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, expected: str) -> None:
    assert KIND.parse({**CHAT, "done_reason": reason}).finish_reason == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"message": None},
        {"message": "hi"},
        {"message": {"content": 1}},
        {"message": {"content": "", "tool_calls": {}}},
        {"message": {"content": "", "tool_calls": [{"function": {"arguments": {}}}]}},
        {"message": {"content": "", "tool_calls": [{"function": {"name": "f", "arguments": []}}]}},
        {"message": {"content": ""}, "eval_count": "5"},
        {"message": {"content": ""}, "model": 1},
        {"error": 'model "llama9" not found, try pulling it first'},
    ],
)
def test_malformed_bodies_raise_wire_error(body: Any) -> None:
    with pytest.raises(WireError):
        KIND.parse(body)


def test_stream_text_usage_and_done() -> None:
    parser = KIND.stream_parser()
    assert feed(parser, STREAM) == [TextDelta("The"), TextDelta(' sky "is"\n')]
    assert parser.finish_reason == "length"
    assert parser.usage == Usage(26, 282)
    assert parser.model == "llama3.2"
    assert parser.done is True


def test_stream_tool_calls() -> None:
    parser = KIND.stream_parser()
    (delta,) = feed(parser, TOOL_STREAM)
    assert isinstance(delta, ToolCallDelta)
    assert (delta.index, delta.name, delta.arguments) == (0, "get_weather", '{"city":"Toronto"}')
    assert delta.id and delta.id.startswith("call_")
    assert parser.finish_reason == "tool_calls"
    assert parser.usage == Usage(200, 20)
    assert parser.done is True


def test_truncated_stream_is_not_done() -> None:
    parser = KIND.stream_parser()
    feed(parser, "\n".join(STREAM.split("\n")[:2]))
    assert parser.done is False
    parser = KIND.stream_parser()
    feed(parser, STREAM[:-60])  # cut inside the final line
    assert parser.done is False


def test_garbage_line_followed_by_more_raises() -> None:
    parser = KIND.stream_parser()
    assert parser.feed("{not json") == []
    with pytest.raises(WireError):
        parser.feed('{"message":{"content":"x"},"done":false}')


def test_in_band_error_raises() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM.split("\n")[0])
    with pytest.raises(WireError, match="out of memory"):
        parser.feed('{"error":"an error was encountered while running the model: out of memory"}')


@pytest.mark.parametrize("line", ["[1]", '{"message": "x"}', '{"message": {"content": 2}}'])
def test_malformed_stream_lines_raise(line: str) -> None:
    with pytest.raises(WireError):
        KIND.stream_parser().feed(line)


def test_models() -> None:
    assert KIND.models_url("http://localhost:11434/") == "http://localhost:11434/api/tags"
    listing = {
        "models": [
            {
                "name": "llama3.2:latest",
                "model": "llama3.2:latest",
                "modified_at": "2025-05-04T17:37:44.706015396-07:00",
                "size": 2019393189,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "format": "gguf",
                    "family": "llama",
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            },
            {"name": "deepseek-r1:7b", "model": "deepseek-r1:7b"},
        ]
    }
    assert KIND.parse_models(listing) == ["llama3.2:latest", "llama3.2", "deepseek-r1:7b"]
    assert KIND.parse_models({"models": []}) == []
    with pytest.raises(WireError):
        KIND.parse_models({"models": [1]})


def test_error_message() -> None:
    assert (
        KIND.error_message({"error": 'model "llama9" not found, try pulling it first'})
        == 'model "llama9" not found, try pulling it first'
    )
