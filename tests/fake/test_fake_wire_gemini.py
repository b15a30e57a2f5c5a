"""The Gemini wire format over real HTTP: JSON, SSE and JSON-array streams, function calls, thinking,
cached-content usage, listings, and Google's refusals (unknown names, wrong types, bad keys)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer

USER = [{"role": "user", "parts": [{"text": "hi there"}]}]


def _usage(prompt: int, out: int | None, thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if out is not None:
        usage["candidatesTokenCount"] = out
    usage["totalTokenCount"] = prompt + (out or 0) + thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


async def _refusal(call: Any, body: dict[str, Any], **kw: Any) -> str:
    r = await call("gemini", body=body, **kw)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT")
    message: str = err["message"]
    return message


async def test_gemini_json_shape(call: Any, body_for: Any) -> None:
    body = {**body_for("gemini", "hello world"), "systemInstruction": {"parts": [{"text": "be brief"}]}}
    d = (await call("gemini", body=body)).json()
    (cand,) = d["candidates"]
    assert cand["content"] == {"parts": [{"text": "echo: hello world"}], "role": "model"}
    assert (cand["finishReason"], cand["index"]) == ("STOP", 0)
    assert d["usageMetadata"] == _usage(4, 3)
    assert d["modelVersion"] == "gemini-1.5-flash"


async def test_gemini_max_output_tokens(call: Any) -> None:
    d = (await call("gemini", "a b c d", max_tokens=2)).json()
    assert d["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert d["candidates"][0]["content"]["parts"][0]["text"] == "echo: a"


async def test_gemini_sse_stream(call: Any, parse_sse_json: Any) -> None:
    r = await call("gemini", "one two", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "\r\n\r\n" in r.text  # Google separates events with CRLF CRLF
    chunks = parse_sse_json(r.text)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == ("echo: one two")
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 3  # cumulative


async def test_gemini_stream_without_alt_sse_is_a_json_array(
    fake: FakeServer, client: httpx.AsyncClient, body_for: Any
) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    r = await client.post(url, json=body_for("gemini", "a b"), params={"key": "k"})
    chunks = json.loads(r.text)
    assert isinstance(chunks, list) and len(chunks) == 3
    assert chunks[-1]["modelVersion"] == "gemini-1.5-pro"


async def test_gemini_function_call(call: Any, parse_sse_json: Any) -> None:
    d = (await call("gemini", "use the tool", tools=["lookup"])).json()
    part = d["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "lookup", "args": {"q": "use the tool"}}}
    assert "thoughtSignature" not in part  # gemini-1.5 does not think
    chunks = parse_sse_json((await call("gemini", "use the tool", stream=True, tools=["lookup"])).text)
    assert len(chunks) == 1 and "functionCall" in chunks[0]["candidates"][0]["content"]["parts"][0]


async def test_gemini_function_response_turn(call: Any) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "use the tool"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"temp": 21}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}],
    }
    d = (await call("gemini", body=body)).json()
    assert d["candidates"][0]["content"]["parts"] == [{"text": 'tool result: {"temp":21}'}]


async def test_gemini_key_in_query_and_auth_error(
    fake: FakeServer, client: httpx.AsyncClient, call: Any, body_for: Any
) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-1.5-flash:generateContent"
    assert (await client.post(url, json=body_for("gemini", "x"), params={"key": "k"})).status_code == 200
    r = await client.post(url, json=body_for("gemini", "x"))
    assert r.status_code == 403  # what Google answers a call without a key
    assert r.json()["error"]["status"] == "PERMISSION_DENIED" and r.json()["error"]["code"] == 403
    fake.require_key = "right"
    r = await client.post(url, json=body_for("gemini", "x"), params={"key": "wrong"})
    err = r.json()["error"]
    assert (r.status_code, err["status"]) == (400, "INVALID_ARGUMENT")  # and a wrong key
    assert err["message"] == "API key not valid. Please pass a valid API key."
    assert err["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "* GenerateContentRequest.contents: contents is not specified"),
        ({}, "* GenerateContentRequest.contents: contents is not specified"),
        (
            {"contents": USER, "stream": True},
            'Invalid JSON payload received. Unknown name "stream": Cannot find field.',
        ),
        (
            {"contents": USER, "generationConfig": {"max_tokens": 5}},
            "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': Cannot "
            "find field.",
        ),
        (
            {"contents": USER, "generationConfig": {"maxOutputTokens": "5"}},
            "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), \"5\"",
        ),
        (
            {"contents": USER, "generationConfig": {"thinkingConfig": {"budget": 5}}},
            'Invalid JSON payload received. Unknown name "budget" at '
            "'generation_config.thinking_config': Cannot find field.",
        ),
        (
            {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
            "Please use a valid role: user, model.",
        ),
        (
            {"contents": [{"role": "user", "parts": []}]},
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": ""}]}]},
            "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have "
            "one initialized field",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
            "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]': Cannot find "
            "field.",
        ),
        (
            {"contents": USER, "tools": [{"functionDeclarations": [{"name": "a b"}]}]},
            "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name. "
            "Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores "
            "(_), dots (.), colons (:), or dashes (-), with a maximum length of 64.",
        ),
    ],
)
async def test_gemini_refusals(call: Any, body: dict[str, Any], message: str) -> None:
    assert await _refusal(call, body) == message


async def test_snake_case_names_are_accepted(call: Any) -> None:
    body = {
        "contents": USER,
        "generation_config": {"max_output_tokens": 1},
        "system_instruction": {"parts": [{"text": "be brief"}]},
    }
    d = (await call("gemini", body=body)).json()
    assert d["candidates"][0]["finishReason"] == "MAX_TOKENS"


async def test_thinking_models_count_their_thoughts(call: Any) -> None:
    d = (await call("gemini", body={"contents": USER}, model="gemini-2.5-flash")).json()
    assert d["candidates"][0]["content"]["parts"] == [{"text": "echo: hi there"}]
    assert d["usageMetadata"] == _usage(2, 3, thoughts=3)
    off = {"contents": USER, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    d = (await call("gemini", body=off, model="gemini-2.5-flash")).json()
    assert d["usageMetadata"] == _usage(2, 3)


async def test_include_thoughts_returns_thought_parts(call: Any, parse_sse_json: Any) -> None:
    body = {"contents": USER, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    d = (await call("gemini", body=body, model="gemini-2.5-pro")).json()
    assert d["candidates"][0]["content"]["parts"] == [
        {"text": "thinking: hi there", "thought": True},
        {"text": "echo: hi there"},
    ]
    chunks = parse_sse_json((await call("gemini", body=body, stream=True, model="gemini-2.5-pro")).text)
    thoughts = [c for c in chunks if c["candidates"][0]["content"]["parts"][0].get("thought")]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in thoughts) == (
        "thinking: hi there"
    )
    assert all("candidatesTokenCount" not in c["usageMetadata"] for c in thoughts)
    assert [c["usageMetadata"]["thoughtsTokenCount"] for c in thoughts] == [1, 2, 3]
    assert chunks[-1]["usageMetadata"] == _usage(2, 3, thoughts=3)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_a_thinking_model_signs_its_function_call(call: Any) -> None:
    d = (await call("gemini", "use the tool", tools=["lookup"], model="gemini-2.5-flash")).json()
    part = d["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["args"] == {"q": "use the tool"} and part["thoughtSignature"]


async def test_cached_directive_fills_cached_content_tokens(call: Any) -> None:
    d = (await call("gemini", "hi", headers={"x-fake": "cached=40"})).json()
    assert d["usageMetadata"] == _usage(41, 2, cached=40)


async def test_gemini_function_args_from_an_openapi_schema(call: Any) -> None:
    decl = {
        "name": "book",
        "parameters": {
            "type": "OBJECT",
            "properties": {"seats": {"type": "INTEGER"}, "when": {"type": "STRING", "format": "date"}},
            "required": ["seats", "when"],
        },
    }
    body = {
        "contents": [{"role": "user", "parts": [{"text": "book it"}]}],
        "tools": [{"functionDeclarations": [decl]}],
    }
    d = (await call("gemini", body=body, headers={"x-fake": "tool"})).json()
    call_part = d["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call_part == {"name": "book", "args": {"seats": 1, "when": "2024-01-01"}}


async def test_gemini_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("gemini") + "/v1beta/models", headers={"x-goog-api-key": "k"})).json()
    first = d["models"][0]
    assert first["name"] == "models/gemini-1.5-flash"
    assert "generateContent" in first["supportedGenerationMethods"]
    assert "displayName" in first


async def test_gemini_3_needs_the_thought_signature_back(call: Any) -> None:
    def history(call_part: dict[str, Any]) -> dict[str, Any]:
        return {
            "contents": [
                {"role": "user", "parts": [{"text": "use the tool"}]},
                {"role": "model", "parts": [call_part]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"a": 1}}}]},
            ],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
        }

    bare = {"functionCall": {"name": "f", "args": {}}}
    message = await _refusal(call, history(bare), model="gemini-3-pro-preview")
    assert message.startswith("Function call is missing a thought_signature in functionCall parts.")
    assert "function call `default_api:f` , position 2." in message
    signed = {**bare, "thoughtSignature": "skip_thought_signature_validator"}
    r = await call("gemini", body=history(signed), model="gemini-3-pro-preview")
    assert r.json()["candidates"][0]["content"]["parts"][-1] == {"text": 'tool result: {"a":1}'}
    assert (await call("gemini", body=history(bare), model="gemini-2.5-pro")).status_code == 200
