"""OpenAI Chat Completions: URL, headers, response and stream parsing, listings, errors.

Fixtures mirror the examples in the OpenAI API reference (chat/create, chat streaming, models).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.providers import WireError, get_kind
from engine.providers.base import StreamParser
from engine.result import TextDelta, ToolCall, ToolCallDelta, Usage

KIND = get_kind("openai")

CHAT = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I assist you today?",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
}

TOOL_CALLS = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{\n"location": "Boston, MA"\n}',
                        },
                    },
                    {
                        "id": "call_def456",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": '{"location": "Oslo"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}

STREAM = """\
data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" wörld \\"!\\"\\n"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}

data: [DONE]

"""  # noqa: E501

TOOL_STREAM = """\
data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"location\\":\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}}

data: [DONE]
"""  # noqa: E501


def feed(parser: StreamParser, transcript: str) -> list[Any]:
    out: list[Any] = []
    for line in transcript.split("\n"):
        out += parser.feed(line)
    return out


def test_url_and_headers() -> None:
    assert (
        KIND.url("https://api.openai.com/v1/", "gpt-4o", False)
        == "https://api.openai.com/v1/chat/completions"
    )
    assert (
        KIND.url("https://api.groq.com/openai/v1", "x", True)
        == "https://api.groq.com/openai/v1/chat/completions"
    )
    assert KIND.auth_headers("sk-1") == {"content-type": "application/json", "Authorization": "Bearer sk-1"}
    assert KIND.auth_headers(None) == {"content-type": "application/json"}
    assert KIND.auth_headers("") == {"content-type": "application/json"}
    assert KIND.stream_format == "sse"


def test_parse_text() -> None:
    parsed = KIND.parse(CHAT)
    assert parsed.text == "Hello! How can I assist you today?"
    assert parsed.finish_reason == "stop"
    assert parsed.usage == Usage(19, 10)
    assert parsed.tool_calls == ()
    assert parsed.model == "gpt-4.1-2025-04-14"


def test_parse_tool_calls() -> None:
    parsed = KIND.parse(TOOL_CALLS)
    assert parsed.text == ""
    assert parsed.finish_reason == "tool_calls"
    assert parsed.tool_calls == (
        ToolCall("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}'),
        ToolCall("call_def456", "get_current_weather", '{"location": "Oslo"}'),
    )
    assert parsed.usage == Usage(82, 17)


def test_forced_tool_choice_finishing_with_stop_reports_tool_calls() -> None:
    body = {**TOOL_CALLS, "choices": [{**TOOL_CALLS["choices"][0], "finish_reason": "stop"}]}
    assert KIND.parse(body).finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("eos", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(given: str | None, expected: str | None) -> None:
    body = {**CHAT, "choices": [{**CHAT["choices"][0], "finish_reason": given}]}
    assert KIND.parse(body).finish_reason == expected


def test_compatible_server_quirks() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    parsed = KIND.parse(body)
    assert parsed.text == "ab"
    assert parsed.usage == Usage()
    assert parsed.model is None
    (call,) = parsed.tool_calls
    assert call.name == "f" and call.arguments == '{"x":1}' and call.id.startswith("call_")


def test_legacy_function_call() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": "{}"},
                },
                "finish_reason": "function_call",
            }
        ]
    }
    parsed = KIND.parse(body)
    assert parsed.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("f", "{}")]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {},
        {"choices": None},
        {"choices": []},
        {"choices": {}},
        {"choices": ["x"]},
        {"choices": [{}]},
        {"choices": [{"message": "hi"}]},
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"content": "x", "tool_calls": {}}}]},
        {"choices": [{"message": {"content": "x", "tool_calls": [{"function": {}}]}}]},
        {"choices": [{"message": {"content": "x", "tool_calls": [{"function": {"name": 1}}]}}]},
        {"choices": [{"message": {"content": "x"}, "finish_reason": 3}]},
        {"choices": [{"message": {"content": "x"}}], "usage": "lots"},
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "9"}},
        {"choices": [{"message": {"content": "x"}}], "model": 4},
        {"error": {"message": "The server had an error", "type": "server_error"}},
    ],
)
def test_malformed_bodies_raise_wire_error(body: Any) -> None:
    with pytest.raises(WireError):
        KIND.parse(body)


def test_stream_text_usage_and_done() -> None:
    parser = KIND.stream_parser()
    deltas = feed(parser, STREAM)
    assert deltas == [TextDelta("Hello"), TextDelta(' wörld "!"\n')]
    assert parser.finish_reason == "stop"
    assert parser.usage == Usage(9, 12)
    assert parser.model == "gpt-4o-mini"
    assert parser.done is True


def test_stream_tool_calls() -> None:
    parser = KIND.stream_parser()
    deltas = feed(parser, TOOL_STREAM)
    assert deltas == [
        ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"'),
        ToolCallDelta(0, None, None, 'location":"Paris"}'),
        ToolCallDelta(1, "call_2", "get_time", "{}"),
    ]
    assert parser.finish_reason == "tool_calls"
    assert parser.usage == Usage(50, 20)
    assert parser.done is True


def test_stream_framing_comments_events_crlf_and_split_data() -> None:
    parser = KIND.stream_parser()
    deltas = feed(
        parser,
        ": OPENROUTER PROCESSING\r\n\r\nevent: chunk\r\nid: 7\r\n"
        'data:{"choices":[{"index":0,"delta":{"content":"a"}}]}\r\n\r\n'
        'data: {"choices":[{"index":0,\n'
        'data: "delta":{"content":"b"}}]}\n\n'
        'data: {"choices":[{"index":1,"delta":{"content":"other choice"}}]}\n\n'
        "retry: 100\n",
    )
    assert deltas == [TextDelta("a"), TextDelta("b")]
    assert parser.done is False


def test_groq_usage_location() -> None:
    parser = KIND.stream_parser()
    feed(
        parser,
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        '"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":4}}}\n\ndata: [DONE]\n',
    )
    assert parser.usage == Usage(3, 4) and parser.done


def test_truncated_stream_is_not_done() -> None:
    parser = KIND.stream_parser()
    cut = STREAM[: STREAM.index("data: [DONE]")]
    feed(parser, cut)
    assert parser.done is False
    parser = KIND.stream_parser()
    feed(parser, STREAM[:300])  # cut mid-line: the partial line is held, not an error
    assert parser.done is False


def test_in_band_error_raises() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM.split("\n\n")[0] + "\n\n")
    with pytest.raises(WireError, match="Rate limit reached"):
        parser.feed(
            'data: {"error":{"message":"Rate limit reached for gpt-4o",'
            '"type":"rate_limit_error","code":"rate_limit_exceeded"}}'
        )


@pytest.mark.parametrize(
    "line",
    [
        "data: [1, 2]",
        'data: {"choices": {}}',
        'data: {"choices": [{"delta": "x"}]}',
        'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "0"}]}}]}',
    ],
)
def test_malformed_stream_lines_raise(line: str) -> None:
    with pytest.raises(WireError):
        KIND.stream_parser().feed(line)


def test_garbage_event_raises_when_the_stream_goes_on() -> None:
    parser = KIND.stream_parser()
    assert parser.feed("data: {not json") == []
    assert parser.feed("") == []
    with pytest.raises(WireError, match="not JSON"):
        parser.feed("data: [DONE]")


def test_stream_cut_inside_an_event_is_truncation_not_garbage() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM[:300])
    assert parser.feed("") == []  # the runtime's end-of-body flush
    assert parser.done is False


def test_models() -> None:
    assert KIND.models_url("https://api.openai.com/v1/") == "https://api.openai.com/v1/models"
    listing = {
        "object": "list",
        "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1686935002, "owned_by": "openai"},
            {"id": "gpt-4.1", "object": "model", "created": 1686935002, "owned_by": "system"},
        ],
    }
    assert KIND.parse_models(listing) == ["gpt-4o-mini", "gpt-4.1"]
    with pytest.raises(WireError):
        KIND.parse_models({"data": "nope"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "error": {
                    "message": "Incorrect API key provided: sk-****1234.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "invalid_request_error: Incorrect API key provided: sk-****1234.",
        ),
        (
            {"error": {"message": "You exceeded your current quota", "type": None, "code": None}},
            "You exceeded your current quota",
        ),
        ({"error": "model not found"}, "model not found"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"object": "error", "message": "bad request", "code": 400}, "bad request"),
        ("upstream timed out", "upstream timed out"),
    ],
)
def test_error_message(body: Any, message: str) -> None:
    assert KIND.error_message(body) == message
