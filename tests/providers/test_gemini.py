"""Google Gemini: URL, headers, response and stream parsing, listings, errors.

Fixtures mirror the examples in the Gemini API reference (generateContent,
streamGenerateContent?alt=sse, function calling, models.list, errors).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.providers import WireError, get_kind
from engine.providers.base import StreamParser
from engine.result import ReasoningBlock, ReasoningDelta, TextDelta, ToolCall, ToolCallDelta, Usage

KIND = get_kind("gemini")

RESPONSE = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "The user asks about AI.", "thought": True},
                    {"text": "AI learns patterns "},
                    {"text": "from data."},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "avgLogprobs": -0.23,
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 4,
        "candidatesTokenCount": 10,
        "thoughtsTokenCount": 30,
        "totalTokenCount": 44,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}

FUNCTION_CALL = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                        "thoughtSignature": "CiQBVKhc7ppmBXTBt2XbqBXIqm+3w6IWYVUA",
                    },
                    {"functionCall": {"name": "get_time", "args": {}, "id": "fc_2"}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 12, "totalTokenCount": 62},
    "modelVersion": "gemini-2.0-flash",
}

BLOCKED = {
    "promptFeedback": {
        "blockReason": "SAFETY",
        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
    },
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    "modelVersion": "gemini-2.0-flash",
}

STREAM = """\
data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5},"modelVersion": "gemini-2.0-flash","responseId": "r1"}\r
\r
data: {"candidates": [{"content": {"parts": [{"text": " sky is blue \\"!\\"\\n"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 8,"totalTokenCount": 13},"modelVersion": "gemini-2.0-flash","responseId": "r1"}\r
\r
data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 12,"totalTokenCount": 17},"modelVersion": "gemini-2.0-flash","responseId": "r1"}\r
\r
"""  # noqa: E501

TOOL_STREAM = """\
data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"location": "Paris"}},"thoughtSignature": "CiQB"}, {"functionCall": {"name": "get_time","args": {}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 50,"candidatesTokenCount": 12,"totalTokenCount": 62},"modelVersion": "gemini-2.5-pro"}

"""  # noqa: E501


def feed(parser: StreamParser, transcript: str) -> list[Any]:
    out: list[Any] = []
    for line in transcript.split("\n"):
        out += parser.feed(line)
    return out


def test_url_and_headers() -> None:
    base = "https://generativelanguage.googleapis.com"
    assert (
        KIND.url(base + "/", "gemini-2.0-flash", False)
        == base + "/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert (
        KIND.url(base, "gemini-2.0-flash", True)
        == base + "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )
    assert (
        KIND.url(base + "/v1beta/", "models/gemini-2.5-pro", False)
        == base + "/v1beta/models/gemini-2.5-pro:generateContent"
    )
    assert (
        KIND.url(base + "/v1", "tunedModels/my-tune", False)
        == base + "/v1/tunedModels/my-tune:generateContent"
    )
    assert KIND.auth_headers("AIza1") == {"content-type": "application/json", "x-goog-api-key": "AIza1"}
    assert KIND.auth_headers(None) == {"content-type": "application/json"}


def test_parse_text_keeps_thoughts_apart_and_bills_them_as_output() -> None:
    parsed = KIND.parse(RESPONSE)
    assert parsed.text == "AI learns patterns from data."
    assert parsed.finish_reason == "stop"
    assert parsed.usage == Usage(4, 40, reasoning_tokens=30)
    assert parsed.reasoning == (ReasoningBlock("gemini", "The user asks about AI."),)
    assert parsed.model == "gemini-2.5-flash"


def test_parse_function_calls() -> None:
    parsed = KIND.parse(FUNCTION_CALL)
    assert parsed.finish_reason == "tool_calls"
    first, second = parsed.tool_calls
    assert first.id.startswith("call_") and len(first.id) > 10
    assert (first.name, first.arguments) == ("get_weather", '{"location":"Paris"}')
    assert second == ToolCall("fc_2", "get_time", "{}")
    assert parsed.usage == Usage(50, 12)
    # the first call's signature, to be handed back on it
    assert parsed.reasoning == (ReasoningBlock("gemini", "", "CiQBVKhc7ppmBXTBt2XbqBXIqm+3w6IWYVUA"),)


def test_parse_blocked_prompt() -> None:
    parsed = KIND.parse(BLOCKED)
    assert (parsed.text, parsed.finish_reason, parsed.usage) == ("", "content_filter", Usage(8, 0))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(given: str | None, expected: str | None) -> None:
    candidate = {**RESPONSE["candidates"][0], "finishReason": given}  # type: ignore[index]
    assert KIND.parse({**RESPONSE, "candidates": [candidate]}).finish_reason == expected


def test_safety_stop_without_content() -> None:
    body = {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": []}]}
    parsed = KIND.parse(body)
    assert (parsed.text, parsed.finish_reason) == ("", "content_filter")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"candidates": None},
        {"candidates": {}},
        {"candidates": ["x"]},
        {"candidates": [{"content": []}]},
        {"candidates": [{"content": {"parts": {}}}]},
        {"candidates": [{"content": {"parts": [{"text": 1}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": "{}"}}]}}]},
        {"candidates": [{"finishReason": 1}]},
        {"candidates": [{}], "usageMetadata": {"promptTokenCount": "4"}},
        {"candidates": [{}], "modelVersion": 2},
        {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}},
    ],
)
def test_malformed_bodies_raise_wire_error(body: Any) -> None:
    with pytest.raises(WireError):
        KIND.parse(body)


def test_stream_text_usage_and_done() -> None:
    parser = KIND.stream_parser()
    assert feed(parser, STREAM) == [TextDelta("The"), TextDelta(' sky is blue "!"\n')]
    assert parser.finish_reason == "stop"
    assert parser.usage == Usage(5, 12)
    assert parser.model == "gemini-2.0-flash"
    assert parser.done is True


def test_stream_function_calls() -> None:
    parser = KIND.stream_parser()
    events = feed(parser, TOOL_STREAM)
    assert events[1] == ReasoningDelta("", signature="CiQB")
    first, second = (e for e in events if isinstance(e, ToolCallDelta))
    assert isinstance(first, ToolCallDelta) and isinstance(second, ToolCallDelta)
    assert (first.index, first.name, first.arguments) == (0, "get_weather", '{"location":"Paris"}')
    assert (second.index, second.name, second.arguments) == (1, "get_time", "{}")
    assert first.id and second.id and first.id != second.id
    assert parser.finish_reason == "tool_calls"
    assert parser.done is True


def test_stream_blocked_prompt_ends_the_stream() -> None:
    parser = KIND.stream_parser()
    assert parser.feed("data: " + json.dumps(BLOCKED)) == []
    assert (parser.finish_reason, parser.done, parser.usage) == ("content_filter", True, Usage(8, 0))


def test_truncated_stream_is_not_done() -> None:
    parser = KIND.stream_parser()
    feed(parser, "\n".join(STREAM.split("\n")[:4]))  # two chunks, no finishReason
    assert parser.done is False
    assert parser.finish_reason is None
    parser = KIND.stream_parser()
    feed(parser, STREAM[:500])
    assert parser.done is False


def test_in_band_error_raises() -> None:
    parser = KIND.stream_parser()
    feed(parser, STREAM.split("\n")[0])
    with pytest.raises(WireError, match="UNAVAILABLE: The model is overloaded"):
        parser.feed(
            'data: {"error": {"code": 503, "message": "The model is overloaded. '
            'Please try again later.", "status": "UNAVAILABLE"}}'
        )


@pytest.mark.parametrize(
    "line",
    [
        'data: ["x"]',
        'data: {"candidates": "x"}',
        'data: {"modelVersion": "m"}',
        'data: {"candidates": [{"content": {"parts": [{"text": 3}]}}]}',
    ],
)
def test_malformed_stream_lines_raise(line: str) -> None:
    with pytest.raises(WireError):
        KIND.stream_parser().feed(line)


def test_models() -> None:
    assert (
        KIND.models_url("https://generativelanguage.googleapis.com/")
        == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
    )
    listing = {
        "models": [
            {
                "name": "models/gemini-2.0-flash",
                "version": "2.0",
                "displayName": "Gemini 2.0 Flash",
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"],
            },
            {
                "name": "models/text-embedding-004",
                "version": "004",
                "supportedGenerationMethods": ["embedContent"],
            },
            {"name": "models/gemini-2.5-pro"},
        ],
        "nextPageToken": "Chxtb2RlbHMvZ2VtaW5pLTEuNS1wcm8tbGF0ZXN0",
    }
    assert KIND.parse_models(listing) == ["gemini-2.0-flash", "gemini-2.5-pro"]
    with pytest.raises(WireError):
        KIND.parse_models({"models": {}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
                    ],
                }
            },
            "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
        ),
        (
            [
                {
                    "error": {
                        "code": 429,
                        "message": "Resource has been exhausted.",
                        "status": "RESOURCE_EXHAUSTED",
                    }
                }
            ],
            "RESOURCE_EXHAUSTED: Resource has been exhausted.",
        ),
    ],
)
def test_error_message(body: Any, message: str) -> None:
    assert KIND.error_message(body) == message
