"""The Anthropic wire format over real HTTP: JSON, event streams, tool use, thinking, prompt-cache
usage, auth (x-api-key or Bearer), the anthropic-version header, listings and refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer

TOOLS = ["search", "calc"]
ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "hi there"}]
THINK = {"type": "enabled", "budget_tokens": 1024}


def _usage(inp: int, out: int, read: int = 0, write: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": out,
        "service_tier": "standard",
    }


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 2048, "messages": USER, **kw}


async def _refusal(call: Any, body: dict[str, Any], **kw: Any) -> str:
    r = await call("anthropic", body=body, **kw)
    assert r.status_code == 400, r.text
    d = r.json()
    assert d["type"] == "error" and d["error"]["type"] == "invalid_request_error"
    assert d["request_id"].startswith("req_")
    message: str = d["error"]["message"]
    return message


async def test_anthropic_json_shape(call: Any, body_for: Any) -> None:
    body = {
        **body_for("anthropic", "ignored"),
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
    }
    r = await call("anthropic", body=body)
    assert r.headers["request-id"].startswith("req_")
    d = r.json()
    assert list(d) == ["model", "id", "type", "role", "content", "stop_reason", "stop_sequence", "usage"]
    assert d["type"] == "message" and d["role"] == "assistant" and d["id"].startswith("msg_")
    assert d["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert (d["stop_reason"], d["stop_sequence"]) == ("end_turn", None)
    assert d["usage"] == _usage(4, 3)


async def test_anthropic_stop_reasons(call: Any, body_for: Any) -> None:
    d = (await call("anthropic", "a b c d", max_tokens=2)).json()
    assert d["stop_reason"] == "max_tokens"
    body = {**body_for("anthropic", "say STOP now"), "stop_sequences": ["STOP"]}
    d = (await call("anthropic", body=body)).json()
    assert (d["stop_reason"], d["stop_sequence"]) == ("stop_sequence", "STOP")
    assert d["content"][0]["text"] == "echo: say "


async def test_cache_directives_fill_the_cache_counts(call: Any, parse_sse: Any) -> None:
    d = (await call("anthropic", "hi", headers={"x-fake": "cached=50 cache_write=7"})).json()
    assert d["usage"] == _usage(1, 2, read=50, write=7)
    events = [
        json.loads(x)
        for _, x in parse_sse(
            (await call("anthropic", "hi", stream=True, headers={"x-fake": "cached=50"})).text
        )
    ]
    assert events[0]["message"]["usage"] == {**_usage(1, 1, read=50)}
    assert events[-2]["usage"] == {
        "input_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 50,
        "output_tokens": 2,
    }


async def test_anthropic_stream_event_sequence(call: Any, parse_sse: Any) -> None:
    r = await call("anthropic", "one two", stream=True)
    events = parse_sse(r.text)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for d, n in zip(data, names, strict=True))
    assert data[0]["message"]["usage"] == _usage(2, 1)
    assert data[0]["message"]["content"] == [] and data[0]["message"]["stop_reason"] is None
    assert data[1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(d["delta"]["text"] for d in data[3:6]) == "echo: one two"
    assert data[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[7]["usage"] == {
        "input_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }


async def test_anthropic_tool_use_json_and_stream(call: Any, parse_sse: Any) -> None:
    d = (await call("anthropic", "call the tool", tools=TOOLS)).json()
    assert d["stop_reason"] == "tool_use"
    (block,) = d["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("search", {"q": "call the tool"})

    events = [
        json.loads(x)
        for _, x in parse_sse((await call("anthropic", "call the tool", stream=True, tools=TOOLS)).text)
    ]
    assert events[1]["content_block"]["type"] == "tool_use"
    assert events[1]["content_block"]["input"] == {}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert all(x["type"] == "input_json_delta" for x in deltas)
    assert deltas[0]["partial_json"] == ""  # as the API does, the first piece is empty
    assert json.loads("".join(x["partial_json"] for x in deltas)) == {"q": "call the tool"}


async def test_anthropic_tool_result_turn(call: Any, body_for: Any) -> None:
    schema = {"type": "object", "properties": {}}
    body = {
        **body_for("anthropic", "x"),
        "tools": [{"name": "search", "input_schema": schema}],
        "messages": [
            {"role": "user", "content": "use the tool"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
    }
    d = (await call("anthropic", body=body)).json()
    assert d["content"] == [{"type": "text", "text": "tool result: sunny"}]


async def test_thinking_block_with_signature(call: Any) -> None:
    d = (await call("anthropic", body=_body(thinking=THINK))).json()
    thinking, reply = d["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "thinking: hi there"
    assert len(thinking["signature"]) > 40
    assert reply == {"type": "text", "text": "echo: hi there"}
    assert d["usage"]["output_tokens"] == 3 + 3  # thinking is billed as output


async def test_thinking_stream_has_thinking_and_signature_deltas(call: Any, parse_sse: Any) -> None:
    events = [
        json.loads(x)
        for _, x in parse_sse((await call("anthropic", body=_body(thinking=THINK, stream=True))).text)
    ]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [{"type": "thinking", "thinking": "", "signature": ""}, {"type": "text", "text": ""}]
    deltas = [(e["index"], e["delta"]) for e in events if e["type"] == "content_block_delta"]
    thoughts = "".join(d["thinking"] for i, d in deltas if d["type"] == "thinking_delta")
    assert thoughts == "thinking: hi there"
    (sig,) = [d for _, d in deltas if d["type"] == "signature_delta"]
    assert sig["signature"]
    assert {i for i, d in deltas if d["type"] == "text_delta"} == {1}
    assert events[-2]["usage"]["output_tokens"] == 6


async def test_version_header(fake: FakeServer, client: httpx.AsyncClient, body_for: Any) -> None:
    url = fake.base_url("anthropic") + "/messages"

    async def post(**headers: str) -> httpx.Response:
        return await client.post(url, json=body_for("anthropic", "hi"), headers={"x-api-key": "k", **headers})

    r = await post()
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "anthropic-version: header is required"
    for good in ("2023-01-01", "2023-06-01", "2026-10-21"):
        assert (await post(**{"anthropic-version": good})).status_code == 200
    for bad in ("latest", "2023-06-01, 2023-06-01", "2023-13-01", "2022-12-31"):
        r = await post(**{"anthropic-version": bad})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == f'anthropic-version: "{bad}" is not a valid version'


async def test_anthropic_auth(call: Any, fake: FakeServer) -> None:
    r = await call("anthropic", headers={"x-api-key": ""})
    assert r.status_code == 401
    assert r.json()["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    bearer = {"x-api-key": "", "Authorization": "Bearer sk-ant-1"}
    r = await call("anthropic", body=_body(), headers=bearer)
    assert r.status_code == 200  # what the official SDK sends
    fake.require_key = "sk-ant-2"
    r = await call("anthropic", body=_body(), headers=bearer)
    assert r.json()["error"]["message"] == "Invalid bearer token"
    r = await call("anthropic", body=_body(), headers={"x-api-key": "nope"})
    assert r.json()["error"]["message"] == "invalid x-api-key"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "c", "messages": []}, "max_tokens: Field required"),
        ({"model": "c", "max_tokens": 5}, "messages: Field required"),
        ({"max_tokens": 5, "messages": USER}, "model: Field required"),
        (_body(max_tokens="5"), "max_tokens: Input should be a valid integer"),
        (_body(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
        (_body(messages=[]), "messages: at least one message is required"),
        (_body(bogus=True), "bogus: Extra inputs are not permitted"),
        (_body(stop_sequences=["\n\n"]), "stop_sequences: each stop sequence must contain non-whitespace"),
        (_body(stop_sequences=["ok", ""]), "stop_sequences: each stop sequence must be non-empty"),
        (_body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
        (
            _body(messages=[{"role": "system", "content": "x"}, *USER]),
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.',
        ),
        (
            _body(messages=[{"role": "user", "content": ""}]),
            "messages.0: all messages must have non-empty content except for the optional final "
            "assistant message",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
            "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the "
            "expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', ...",
        ),
        (
            _body(messages=[*USER, {"role": "assistant", "content": "sure "}]),
            "messages: final assistant content cannot end with trailing whitespace",
        ),
        (
            _body(tools=[{"name": "f", "input_schema": {"properties": {}}}]),
            "tools.0.custom.input_schema.type: Field required",
        ),
        (_body(tools=[{"name": "f"}]), "tools.0.custom.input_schema: Field required"),
        (
            _body(tools=[{"name": "a b", "input_schema": {"type": "object"}}]),
            "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        ),
        (_body(tool_choice={"type": "auto"}), "tool_choice may only be specified while providing tools."),
        (
            _body(thinking={"type": "enabled", "budget_tokens": 512}),
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            _body(max_tokens=1024, thinking=THINK),
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
            "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
            "#max-tokens-and-context-window-size",
        ),
        (
            _body(thinking=THINK, temperature=0.5),
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our "
            "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
            "#feature-compatibility",
        ),
    ],
)
async def test_anthropic_refusals(call: Any, body: dict[str, Any], message: str) -> None:
    assert await _refusal(call, body) == message


async def test_tool_results_must_match_the_tool_uses_before_them(call: Any) -> None:
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"}]}
    message = await _refusal(call, _body(messages=[*USER, use, result]))
    assert message.startswith(
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2."
    )
    message = await _refusal(call, _body(messages=[*USER, use, *USER]))
    assert message.startswith(
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."
    )


async def test_anthropic_in_stream_error(call: Any, parse_sse: Any) -> None:
    events = parse_sse(
        (await call("anthropic", "a b c", stream=True, headers={"x-fake": "stream_error"})).text
    )
    name, data = events[-1]
    assert name == "error"
    body = json.loads(data)
    assert body["error"] == {"details": None, "type": "overloaded_error", "message": "Overloaded (injected)"}
    assert body["request_id"].startswith("req_")


async def test_anthropic_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("anthropic") + "/models", headers=ANTHROPIC)).json()
    assert d["has_more"] is False
    assert d["first_id"] == d["data"][0]["id"] == "claude-3-5-haiku-latest"
    assert set(d["data"][0]) == {"type", "id", "display_name", "created_at"}


async def test_not_json_is_400_in_the_kinds_shape(fake: FakeServer, client: httpx.AsyncClient) -> None:
    r = await client.post(fake.base_url("anthropic") + "/messages", content=b"{nope", headers=ANTHROPIC)
    assert r.status_code == 400 and r.json()["type"] == "error"


async def test_thoughts_handed_back_keep_their_signature(call: Any, body_for: Any) -> None:
    tool = {"name": "search", "input_schema": {"type": "object", "properties": {}}}
    first = (
        await call("anthropic", body=_body(thinking=THINK, tools=[tool]), headers={"x-fake": "tool"})
    ).json()
    thinking, use = first["content"]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "42"}]}
    body = _body(
        thinking=THINK,
        tools=[tool],
        messages=[*USER, {"role": "assistant", "content": first["content"]}, result],
    )
    d = (await call("anthropic", body=body)).json()
    assert d["content"][-1] == {"type": "text", "text": "tool result: 42"}
    forged = {**thinking, "thinking": thinking["thinking"] + " (edited)"}
    body["messages"][1] = {"role": "assistant", "content": [forged, use]}
    assert await _refusal(call, body) == ("messages.1.content.0: Invalid `signature` in `thinking` block")
    body["messages"][1] = {"role": "assistant", "content": [use]}  # the thinking dropped
    assert (await _refusal(call, body)).startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block"
    )
    del body["thinking"]  # without thinking the same history is fine
    assert (await call("anthropic", body=body)).status_code == 200
