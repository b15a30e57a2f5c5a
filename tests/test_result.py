"""``Response.message()``: the assistant message that hands an answer, its tool calls and its
reasoning back in a following request; and the response cache's stored form keeps all of it."""

from __future__ import annotations

import json
from dataclasses import replace

from engine.result import ReasoningBlock, Response, ToolCall, Usage, reasoning_text
from engine.runtime.state.memory import MemoryStore
from engine.runtime.state.responses import ResponseCache, decode_response, encode_response

BLOCKS = (
    ReasoningBlock("anthropic", "Let me", "sig-1"),
    ReasoningBlock("anthropic", redacted="EmwK"),
    ReasoningBlock("anthropic", " think.", "sig-2"),
)
RESP = Response(
    text="",
    provider="anth",
    model="claude",
    finish_reason="tool_calls",
    tool_calls=(ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),),
    usage=Usage(50, 9, 40, 5, 3),
    reasoning=reasoning_text(BLOCKS),
    reasoning_blocks=BLOCKS,
    native={
        "id": "msg_1",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "text", "text": "ok", "citations": [{"type": "web_search_result_location", "url": "u"}]},
        ],
        "stop_reason": "pause_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "server_tool_use": {"web_search_requests": 1}},
    },
)


def test_message_carries_content_tool_calls_and_reasoning() -> None:
    assert RESP.reasoning == "Let me think."
    assert RESP.message() == {
        "role": "assistant",
        "content": [  # several (or redacted) thinking blocks: Anthropic's own, in order
            {"type": "thinking", "thinking": "Let me", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "EmwK"},
            {"type": "thinking", "thinking": " think.", "signature": "sig-2"},
        ],
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }


def test_one_signed_thought_goes_back_in_the_request_fields() -> None:
    one = (ReasoningBlock("anthropic", "Hmm.", "sig"),)
    resp = Response(text="ok", provider="a", model="m", reasoning="Hmm.", reasoning_blocks=one)
    assert resp.message() == {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "Hmm.",
        "reasoning_signature": "sig",
    }


def test_a_gemini_signature_rides_on_the_first_tool_call() -> None:
    blocks = (ReasoningBlock("gemini", "plan"), ReasoningBlock("gemini", signature="c2ln"))
    resp = Response(
        text="",
        provider="g",
        model="m",
        reasoning="plan",
        reasoning_blocks=blocks,
        tool_calls=(ToolCall("c1", "f", "{}"), ToolCall("c2", "g", "{}")),
    )
    msg = resp.message()
    assert msg["reasoning_content"] == "plan" and "reasoning_signature" not in msg
    first, second = msg["tool_calls"]
    assert first["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert "extra_content" not in second


def test_message_without_reasoning_or_tools_is_plain() -> None:
    plain = Response(text="hi", provider="a", model="m")
    assert plain.message() == {"role": "assistant", "content": "hi"}
    assert reasoning_text(()) is None


def test_the_shared_cache_form_keeps_usage_details_and_reasoning() -> None:
    back = decode_response(encode_response(RESP))
    assert back.usage == RESP.usage and back.reasoning_blocks == BLOCKS
    assert back.reasoning == "Let me think." and back.cached
    # an entry written before these fields existed still reads (as none of them)
    old = {
        "v": 1,
        "text": "x",
        "provider": "a",
        "model": "m",
        "finish_reason": "stop",
        "tool_calls": [],
        "usage": [3, 4],
        "cost": None,
    }
    entry = decode_response(old)
    assert entry.usage == Usage(3, 4) and entry.reasoning_blocks == () and entry.reasoning is None
    assert entry.native is None


def test_the_shared_cache_form_keeps_the_providers_own_answer() -> None:
    """``native`` goes through the store's JSON as it came; an entry whose ``native`` is not an
    object is a miss, not an error."""
    cache = ResponseCache(MemoryStore(), 60)  # (dumps and loads: the JSON a shared store keeps)
    back = cache.loads(cache.dumps(RESP))
    assert back is not None and back.native == RESP.native and back == replace(RESP, cached=True)
    broken = {**json.loads(cache.dumps(RESP)), "native": ["not", "an", "object"]}
    assert cache.loads(json.dumps(broken)) is None
