"""Reasoning and usage details per kind, on fixtures of the shapes the real APIs send: reasoning is
parsed apart from the answer (``Parsed.reasoning``, ``ReasoningDelta``), cached and reasoning
tokens land in ``Usage`` with one meaning for every kind."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.providers import WireError, get_kind
from engine.providers.base import StreamParser
from engine.result import ReasoningBlock, ReasoningDelta, TextDelta, Usage


def feed(parser: StreamParser, lines: list[str]) -> list[Any]:
    out: list[Any] = []
    for line in [*lines, ""]:
        out += parser.feed(line)
    return out


def sse(*events: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for event in events:
        lines += ["data: " + json.dumps(event), ""]
    return lines


# -- OpenAI and compatible servers ---------------------------------------------------------------

OPENAI_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def _openai(message: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 5, "completion_tokens": 9},
    }


def test_openai_usage_details() -> None:
    parsed = get_kind("openai").parse(_openai({"content": "hi"}, OPENAI_USAGE))
    # prompt_tokens already holds the cached ones, completion_tokens the reasoning ones
    assert parsed.usage == Usage(2006, 300, cache_read_tokens=1920, reasoning_tokens=256)


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])  # DeepSeek/vLLM, OpenRouter
def test_openai_reasoning_is_not_the_answer(key: str) -> None:
    parsed = get_kind("openai").parse(_openai({"content": "4", key: "2 plus 2 is 4."}))
    assert parsed.text == "4"
    assert parsed.reasoning == (ReasoningBlock("openai", "2 plus 2 is 4."),)
    assert get_kind("openai").parse(_openai({"content": "4", key: None})).reasoning == ()


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_openai_stream_reasoning_deltas(key: str) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    parser = get_kind("openai").stream_parser()
    events = feed(
        parser,
        [
            *sse(
                chunk({"role": "assistant", "content": None, key: "2 plus"}),
                chunk({"content": None, key: " 2."}),
                chunk({"content": "4", key: None}),
                chunk({}, "stop"),
                {"id": "c", "choices": [], "usage": OPENAI_USAGE},
            ),
            "data: [DONE]",
            "",
        ],
    )
    assert events == [ReasoningDelta("2 plus"), ReasoningDelta(" 2."), TextDelta("4")]
    assert parser.reasoning == (ReasoningBlock("openai", "2 plus 2."),)
    assert parser.usage.reasoning_tokens == 256 and parser.usage.cache_read_tokens == 1920


@pytest.mark.parametrize(
    "message",
    [
        {"content": "x", "reasoning_content": 5},
        {"content": "x", "reasoning": ["a"]},
    ],
)
def test_openai_malformed_reasoning_raises(message: dict[str, Any]) -> None:
    with pytest.raises(WireError, match="reasoning"):
        get_kind("openai").parse(_openai(message))


def test_openai_malformed_usage_details_raise() -> None:
    usage = {**OPENAI_USAGE, "prompt_tokens_details": {"cached_tokens": -1}}
    with pytest.raises(WireError, match="cached_tokens"):
        get_kind("openai").parse(_openai({"content": "x"}, usage))


# -- Anthropic -----------------------------------------------------------------------------------


def test_anthropic_redacted_thinking_and_thinking_tokens() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "EuYBCkQYAiJA"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            {"type": "text", "text": "Done."},
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 90,
            "output_tokens_details": {"thinking_tokens": 70},
        },
    }
    parsed = get_kind("anthropic").parse(body)
    assert parsed.text == "Done."
    assert parsed.reasoning == (
        ReasoningBlock("anthropic", "Let me see.", "EuYBCkQYAiJA"),
        ReasoningBlock("anthropic", redacted="EmwKAhgBEgy3va3pzix"),
    )
    assert parsed.usage == Usage(12, 90, reasoning_tokens=70)


def test_anthropic_stream_redacted_thinking_block() -> None:
    parser = get_kind("anthropic").stream_parser()
    events = feed(
        parser,
        sse(
            {
                "type": "message_start",
                "message": {"model": "claude", "usage": {"input_tokens": 10, "output_tokens": 1}},
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ok"}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}},
            {"type": "message_stop"},
        ),
    )
    # [0]: message_start, [-1]: message_delta
    assert events[1:-1] == [ReasoningDelta("", redacted="EmwKAhgB"), TextDelta("ok")]
    assert parser.reasoning == (ReasoningBlock("anthropic", redacted="EmwKAhgB"),)
    assert parser.usage == Usage(10, 30)


# -- Gemini --------------------------------------------------------------------------------------


def _gemini(
    parts: list[dict[str, Any]], usage: dict[str, Any] | None = None, finish: str | None = "STOP"
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-pro"}
    if usage is not None:
        out["usageMetadata"] = usage
    return out


def test_gemini_cached_content_and_thought_signature_on_the_answer() -> None:
    usage = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1024,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 80,
        "totalTokenCount": 1300,
    }
    parsed = get_kind("gemini").parse(
        _gemini(
            [
                {"text": "**Plan**\n\nThink.", "thought": True},
                {"text": "Answer.", "thoughtSignature": "EqoeCqce"},
            ],
            usage,
        )
    )
    assert parsed.text == "Answer."
    assert parsed.reasoning == (
        ReasoningBlock("gemini", "**Plan**\n\nThink."),
        ReasoningBlock("gemini", "", "EqoeCqce"),
    )
    assert parsed.usage == Usage(1200, 100, cache_read_tokens=1024, reasoning_tokens=80)


def test_gemini_stream_thought_parts_are_one_block() -> None:
    parser = get_kind("gemini").stream_parser()
    events = feed(
        parser,
        sse(
            _gemini([{"text": "First, ", "thought": True}], finish=None),
            _gemini([{"text": "then.", "thought": True}], finish=None),
            _gemini([{"text": "Answer", "thoughtSignature": "CiIB"}], finish=None),
            _gemini(
                [{"text": "."}], {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 7}
            ),
        ),
    )
    assert events == [
        ReasoningDelta("First, "),
        ReasoningDelta("then."),
        TextDelta("Answer"),
        ReasoningDelta("", signature="CiIB"),
        TextDelta("."),
    ]
    assert parser.reasoning == (
        ReasoningBlock("gemini", "First, then."),
        ReasoningBlock("gemini", "", "CiIB"),
    )
    assert parser.usage == Usage(3, 9, reasoning_tokens=7)


def test_gemini_malformed_signature_raises() -> None:
    with pytest.raises(WireError, match="thoughtSignature"):
        get_kind("gemini").parse(_gemini([{"text": "x", "thoughtSignature": 5}]))


# -- Ollama --------------------------------------------------------------------------------------


def test_ollama_thinking_is_not_the_answer() -> None:
    body = {
        "model": "qwen3",
        "message": {"role": "assistant", "content": "4", "thinking": "2 plus 2."},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 9,
        "eval_count": 30,
    }
    parsed = get_kind("ollama").parse(body)
    assert parsed.text == "4"
    assert parsed.reasoning == (ReasoningBlock("ollama", "2 plus 2."),)


def test_ollama_stream_thinking_fragments() -> None:
    def line(message: dict[str, Any], **extra: Any) -> str:
        return json.dumps(
            {"model": "qwen3", "message": {"role": "assistant", **message}, "done": False, **extra}
        )

    parser = get_kind("ollama").stream_parser()
    events = feed(
        parser,
        [
            line({"content": "", "thinking": "2 plus"}),
            line({"content": "", "thinking": " 2."}),
            line({"content": "4"}),
            line({"content": ""}, done=True, done_reason="stop", prompt_eval_count=9, eval_count=30),
        ],
    )
    assert events == [ReasoningDelta("2 plus"), ReasoningDelta(" 2."), TextDelta("4")]
    assert parser.reasoning == (ReasoningBlock("ollama", "2 plus 2."),)
    with pytest.raises(WireError, match="thinking"):
        get_kind("ollama").stream_parser().feed(line({"content": "", "thinking": 3}))
