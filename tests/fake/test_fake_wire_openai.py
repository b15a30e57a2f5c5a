"""The OpenAI wire format over real HTTP: JSON, streams, tool calls, usage details, reasoning
models, listings, and the refusals of bodies the real API refuses (with its param and code)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer
from engine.fake.wire_openai import is_reasoning

TOOLS = ["search", "calc"]
USER = [{"role": "user", "content": "hi"}]


def _usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def _refusal(call: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await call("openai", body=body)
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["type"] == "invalid_request_error" and set(err) == {"message", "type", "param", "code"}
    return err


async def test_openai_json_shape(call: Any) -> None:
    r = await call("openai", "hello world")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    d = r.json()
    assert list(d) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-")
    assert isinstance(d["created"], int) and d["model"] == "gpt-4o-mini"
    assert d["service_tier"] == "default" and d["system_fingerprint"].startswith("fp_")
    choice = d["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: hello world",
        "refusal": None,
        "annotations": [],
    }
    assert d["usage"] == _usage(2, 3)


async def test_openai_is_also_served_without_v1(
    fake: FakeServer, client: httpx.AsyncClient, body_for: Any
) -> None:
    r = await client.post(
        fake.url + "/chat/completions", json=body_for("openai", "hi"), headers={"Authorization": "Bearer k"}
    )
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"


async def test_openai_max_tokens_gives_length(call: Any) -> None:
    d = (await call("openai", "a b c d e", max_tokens=3)).json()
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["choices"][0]["message"]["content"] == "echo: a b"


async def test_max_completion_tokens_is_accepted_everywhere(call: Any) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "a b c d e"}],
        "max_completion_tokens": 2,
    }
    d = (await call("openai", body=body)).json()
    assert (d["choices"][0]["message"]["content"], d["choices"][0]["finish_reason"]) == ("echo: a", "length")


async def test_openai_stream_shape(call: Any, parse_sse_json: Any) -> None:
    r = await call("openai", "one two three", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    chunks = parse_sse_json(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c and c["service_tier"] == "default" for c in chunks)
    assert list(chunks[1]) == [
        "id",
        "object",
        "created",
        "model",
        "service_tier",
        "system_fingerprint",
        "choices",
        "obfuscation",
    ]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert len(chunks) == 1 + 4 + 1  # role, one chunk per word, finish


async def test_openai_stream_usage_only_when_asked(call: Any, body_for: Any, parse_sse_json: Any) -> None:
    body = {
        **body_for("openai", "hi there", stream=True),
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }
    chunks = parse_sse_json((await call("openai", body=body)).text)
    assert all(c["usage"] is None and "obfuscation" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == _usage(2, 3)


async def test_cached_directive_fills_cached_tokens(call: Any, body_for: Any, parse_sse_json: Any) -> None:
    d = (await call("openai", "hello", headers={"x-fake": "cached=100 cache_write=5"})).json()
    assert d["usage"] == _usage(1 + 100 + 5, 2, cached=100)
    d = (await call("openai", "hello [[fake: cached=3]]")).json()
    assert d["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    body = {**body_for("openai", "hi", stream=True), "stream_options": {"include_usage": True}}
    chunks = parse_sse_json((await call("openai", body=body, headers={"x-fake": "cached=7"})).text)
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 7


async def test_openai_tool_call_json_and_stream(call: Any, parse_sse_json: Any) -> None:
    d = (await call("openai", "use a tool", tools=TOOLS)).json()
    choice = d["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert list(choice["message"]) == ["role", "content", "tool_calls", "refusal", "annotations"]
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "search"
    assert json.loads(tc["function"]["arguments"]) == {"q": "use a tool"}

    chunks = parse_sse_json((await call("openai", "use a tool", stream=True, tools=TOOLS)).text)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["index"] == 0 and first["function"] == {"name": "search", "arguments": ""}
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1])
    assert json.loads(args) == {"q": "use a tool"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_arguments_follow_the_schema(call: Any) -> None:
    params = {
        "type": "object",
        "required": ["city", "units", "days"],
        "properties": {
            "city": {"type": "string"},
            "units": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 3},
            "verbose": {"type": "boolean"},
        },
    }
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "weather in Paris"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": params}}],
        "tool_choice": "required",
    }
    d = (await call("openai", body=body, headers={"x-fake": "tool"})).json()
    args = json.loads(d["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert args == {"city": "weather in Paris", "units": "c", "days": 3}


async def test_reasoning_models_count_reasoning_tokens(call: Any) -> None:
    body = {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "hi there"}],
        "max_completion_tokens": 100,
        "reasoning_effort": "low",
    }
    d = (await call("openai", body=body)).json()
    assert d["choices"][0]["message"]["content"] == "echo: hi there"  # the reasoning is not shown
    assert d["usage"] == _usage(2, 3 + 3, reasoning=3)  # "thinking: hi there"


async def test_reasoning_spends_the_completion_budget_first(call: Any) -> None:
    body = {
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "a b c d"}],
        "max_completion_tokens": 4,
    }
    d = (await call("openai", body=body)).json()
    choice = d["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("", "length")
    assert d["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


@pytest.mark.parametrize(
    "model", ["o1", "o1-mini", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano", "gpt-5.1", "o3-2025-04-16"]
)
async def test_reasoning_models_refuse_max_tokens(call: Any, model: str) -> None:
    assert is_reasoning(model)
    err = await _refusal(call, {"model": model, "messages": USER, "max_tokens": 10})
    assert err == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this "
        "model. Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "gpt-5-chat-latest", "o", "gpt-50"])
def test_chat_models_are_not_reasoning_models(model: str) -> None:
    assert not is_reasoning(model)


async def test_reasoning_models_refuse_sampling_settings(call: Any) -> None:
    err = await _refusal(call, {"model": "o3", "messages": USER, "temperature": 0.2})
    assert (err["param"], err["code"]) == ("temperature", "unsupported_value")
    assert err["message"] == (
        "Unsupported value: 'temperature' does not support 0.2 with this "
        "model. Only the default (1) value is supported."
    )
    assert (await call("openai", body={"model": "o3", "messages": USER, "temperature": 1})).status_code == 200
    err = await _refusal(
        call, {"model": "o1-mini", "messages": [{"role": "system", "content": "be brief"}, *USER]}
    )
    assert err["message"] == (
        "Unsupported value: 'messages[0].role' does not support 'system' with this model."
    )
    err = await _refusal(call, {"model": "gpt-4o", "messages": USER, "reasoning_effort": "low"})
    assert (err["param"], err["code"]) == ("reasoning_effort", "unsupported_parameter")


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        ({"messages": USER}, None, None, "you must provide a model parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
        (
            {"model": "m", "messages": []},
            "messages",
            "empty_array",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
            "array instead.",
        ),
        (
            {"model": "m", "messages": USER, "max_tokens": "10"},
            "max_tokens",
            "invalid_type",
            "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        ),
        (
            {"model": "m", "messages": USER, "temperature": "hot"},
            "temperature",
            "invalid_type",
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        ),
        (
            {"model": "m", "messages": USER, "temperature": 2.5},
            "temperature",
            "decimal_above_max_value",
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.",
        ),
        (
            {"model": "m", "messages": USER, "max_tokens": 0},
            "max_tokens",
            "integer_below_min_value",
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
        (
            {"model": "m", "messages": USER, "stop": list("abcde")},
            "stop",
            "array_above_max_length",
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array "
            "with length 5 instead.",
        ),
        (
            {"model": "m", "messages": USER, "bogus": 1},
            None,
            None,
            "Unrecognized request argument supplied: bogus",
        ),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role",
            "missing_required_parameter",
            "Missing required parameter: 'messages[0].role'.",
        ),
        (
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', "
            "'user', 'function', 'tool', and 'developer'.",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "messages[0].content[0].type",
            "invalid_value",
            "Invalid value: 'input_text'. Supported values are: 'text', 'image_url', 'input_audio', "
            "'refusal', 'audio', and 'file'.",
        ),
        (
            {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
            "stream_options",
            None,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
        (
            {"model": "m", "messages": USER, "tool_choice": "auto"},
            "tool_choice",
            None,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ),
        (
            {"model": "m", "messages": USER, "tools": []},
            "tools",
            "empty_array",
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty "
            "array instead.",
        ),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
            "missing_required_parameter",
            "Missing required parameter: 'tools[0].function.name'.",
        ),
        (
            {"model": "m", "messages": USER, "tools": [TOOL], "tool_choice": "weird"},
            "tool_choice",
            "invalid_value",
            "Invalid value: 'weird'. Supported values are: 'none', 'auto', and 'required'.",
        ),
        (
            {
                "model": "m",
                "messages": USER,
                "tools": [TOOL],
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            },
            "tool_choice",
            None,
            "Invalid value for 'tool_choice': no function named 'other' was specified in the "
            "'tools' parameter.",
        ),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "yaml"}},
            "response_format.type",
            "invalid_value",
            "Invalid value: 'yaml'. Supported values are: 'text', 'json_object', and 'json_schema'.",
        ),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
            "missing_required_parameter",
            "Missing required parameter: 'response_format.json_schema.name'.",
        ),
    ],
)
async def test_openai_refusals(
    call: Any, body: dict[str, Any], param: str | None, code: str | None, message: str
) -> None:
    err = await _refusal(call, body)
    assert (err["message"], err["param"], err["code"]) == (message, param, code)


async def test_tool_messages_must_answer_a_preceding_tool_call(call: Any) -> None:
    call_msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    err = await _refusal(call, {"model": "m", "messages": [*USER, tool]})
    assert err["message"].startswith(
        "Invalid parameter: messages with role 'tool' must be a "
        "response to a preceeding message with 'tool_calls'."
    )
    assert err["param"] == "messages.[1].role"
    err = await _refusal(call, {"model": "m", "messages": [*USER, call_msg, *USER]})
    assert err["message"].endswith("did not have response messages: call_1")
    d = (await call("openai", body={"model": "m", "messages": [*USER, call_msg, tool]})).json()
    assert d["choices"][0]["message"]["content"] == "tool result: 42"


async def test_service_tier_is_echoed(call: Any) -> None:
    d = (await call("openai", body={"model": "m", "messages": USER, "service_tier": "flex"})).json()
    assert d["service_tier"] == "flex"
    err = await _refusal(call, {"model": "m", "messages": USER, "service_tier": "gold"})
    assert (err["param"], err["code"]) == ("service_tier", "invalid_value")


async def test_openai_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("openai") + "/models", headers={"Authorization": "Bearer k"})).json()
    assert d["object"] == "list"
    assert d["data"][0] == {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": 1715367049,
        "owned_by": "system",
    }


async def test_openai_auth(call: Any, fake: FakeServer) -> None:
    r = await call("openai", headers={"Authorization": ""})
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    fake.require_key = "sk-right"
    r = await call("openai", headers={"Authorization": "Bearer sk-wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert (await call("openai", headers={"Authorization": "Bearer sk-right"})).status_code == 200


async def test_not_json_is_400_in_the_kinds_shape(fake: FakeServer, client: httpx.AsyncClient) -> None:
    r = await client.post(
        fake.base_url("openai") + "/chat/completions", content=b"{nope", headers={"Authorization": "Bearer k"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
