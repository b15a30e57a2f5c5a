"""OpenAI and Anthropic wire formats over real HTTP: JSON, streams, tool calls, listings, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.fake import FakeServer

TOOLS = ["search", "calc"]
ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


# -- openai ------------------------------------------------------------------------------------
async def test_openai_json_shape(call: Any) -> None:
    r = await call("openai", "hello world")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    d = r.json()
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-")
    assert isinstance(d["created"], int) and d["model"] == "gpt-4o-mini"
    choice = d["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "echo: hello world",
                                 "refusal": None}
    assert d["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_openai_is_also_served_without_v1(fake: FakeServer, client: httpx.AsyncClient,
                                                body_for: Any) -> None:
    r = await client.post(fake.url + "/chat/completions", json=body_for("openai", "hi"),
                          headers={"Authorization": "Bearer k"})
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"


async def test_openai_max_tokens_gives_length(call: Any) -> None:
    d = (await call("openai", "a b c d e", max_tokens=3)).json()
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["choices"][0]["message"]["content"] == "echo: a b"


async def test_openai_stream_shape(call: Any, parse_sse_json: Any) -> None:
    r = await call("openai", "one two three", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    chunks = parse_sse_json(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)  # no include_usage, no usage
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert len(chunks) == 1 + 4 + 1  # role, one chunk per word, finish


async def test_openai_stream_usage_only_when_asked(call: Any, body_for: Any,
                                                   parse_sse_json: Any) -> None:
    body = {**body_for("openai", "hi there", stream=True),
            "stream_options": {"include_usage": True}}
    chunks = parse_sse_json((await call("openai", body=body)).text)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_openai_tool_call_json_and_stream(call: Any, parse_sse_json: Any) -> None:
    d = (await call("openai", "use a tool", tools=TOOLS)).json()
    choice = d["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "search"
    assert json.loads(tc["function"]["arguments"]) == {"q": "use a tool"}

    chunks = parse_sse_json((await call("openai", "use a tool", stream=True, tools=TOOLS)).text)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["index"] == 0 and first["function"] == {"name": "search", "arguments": ""}
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                   for c in chunks[1:-1])
    assert json.loads(args) == {"q": "use a tool"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("openai") + "/models",
                          headers={"Authorization": "Bearer k"})).json()
    assert d["object"] == "list"
    assert d["data"][0] == {"id": "gpt-4o-mini", "object": "model", "created": 1715367049,
                            "owned_by": "system"}


async def test_openai_auth(call: Any, fake: FakeServer) -> None:
    r = await call("openai", headers={"Authorization": ""})
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    fake.require_key = "sk-right"
    assert (await call("openai", headers={"Authorization": "Bearer sk-wrong"})).status_code == 401
    assert (await call("openai", headers={"Authorization": "Bearer sk-right"})).status_code == 200


async def test_openai_bad_bodies_are_400(call: Any) -> None:
    r = await call("openai", body={"model": "m", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert (await call("openai", body={"messages": [{"role": "user"}]})).status_code == 400


async def test_not_json_is_400_in_the_kinds_shape(fake: FakeServer,
                                                  client: httpx.AsyncClient) -> None:
    r = await client.post(fake.base_url("anthropic") + "/messages", content=b"{nope",
                          headers=ANTHROPIC)
    assert r.status_code == 400 and r.json()["type"] == "error"


# -- anthropic ---------------------------------------------------------------------------------
async def test_anthropic_json_shape(call: Any, body_for: Any) -> None:
    body = {**body_for("anthropic", "ignored"), "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]}
    d = (await call("anthropic", body=body)).json()
    assert d["type"] == "message" and d["role"] == "assistant" and d["id"].startswith("msg_")
    assert d["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert (d["stop_reason"], d["stop_sequence"]) == ("end_turn", None)
    assert d["usage"] == {"input_tokens": 4, "output_tokens": 3}


async def test_anthropic_stop_reasons(call: Any, body_for: Any) -> None:
    d = (await call("anthropic", "a b c d", max_tokens=2)).json()
    assert d["stop_reason"] == "max_tokens"
    body = {**body_for("anthropic", "say STOP now"), "stop_sequences": ["STOP"]}
    d = (await call("anthropic", body=body)).json()
    assert (d["stop_reason"], d["stop_sequence"]) == ("stop_sequence", "STOP")
    assert d["content"][0]["text"] == "echo: say "


async def test_anthropic_requires_max_tokens(call: Any) -> None:
    r = await call("anthropic", body={"model": "c", "messages": []})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "max_tokens: Field required"}}


async def test_anthropic_missing_version_header(fake: FakeServer, client: httpx.AsyncClient,
                                                body_for: Any) -> None:
    r = await client.post(fake.base_url("anthropic") + "/messages",
                          json=body_for("anthropic", "hi"), headers={"x-api-key": "k"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "anthropic-version: header is required"


async def test_anthropic_auth(call: Any) -> None:
    r = await call("anthropic", headers={"x-api-key": ""})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


async def test_anthropic_stream_event_sequence(call: Any, parse_sse: Any) -> None:
    r = await call("anthropic", "one two", stream=True)
    events = parse_sse(r.text)
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for d, n in zip(data, names, strict=True))
    assert data[0]["message"]["usage"]["input_tokens"] == 2
    assert data[1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(d["delta"]["text"] for d in data[3:6]) == "echo: one two"
    assert data[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[7]["usage"] == {"output_tokens": 3}


async def test_anthropic_tool_use_json_and_stream(call: Any, parse_sse: Any) -> None:
    d = (await call("anthropic", "call the tool", tools=TOOLS)).json()
    assert d["stop_reason"] == "tool_use"
    (block,) = d["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("search", {"q": "call the tool"})

    events = [json.loads(x) for _, x in parse_sse(
        (await call("anthropic", "call the tool", stream=True, tools=TOOLS)).text)]
    assert events[1]["content_block"]["type"] == "tool_use"
    assert events[1]["content_block"]["input"] == {}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert all(x["type"] == "input_json_delta" for x in deltas)
    assert json.loads("".join(x["partial_json"] for x in deltas)) == {"q": "call the tool"}


async def test_anthropic_tool_result_turn(call: Any, body_for: Any) -> None:
    body = {**body_for("anthropic", "x"), "tools": [{"name": "search", "input_schema": {}}],
            "messages": [
                {"role": "user", "content": "use the tool"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]}
    d = (await call("anthropic", body=body)).json()
    assert d["content"] == [{"type": "text", "text": "tool result: sunny"}]


async def test_anthropic_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("anthropic") + "/models", headers=ANTHROPIC)).json()
    assert d["has_more"] is False
    assert d["first_id"] == d["data"][0]["id"] == "claude-3-5-haiku-latest"
    assert set(d["data"][0]) == {"type", "id", "display_name", "created_at"}
