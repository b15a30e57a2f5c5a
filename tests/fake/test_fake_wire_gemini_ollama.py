"""Gemini and Ollama wire formats over real HTTP: JSON, streams, tool calls, listings, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.fake import FakeServer


# -- gemini ------------------------------------------------------------------------------------
async def test_gemini_json_shape(call: Any, body_for: Any) -> None:
    body = {**body_for("gemini", "hello world"),
            "systemInstruction": {"parts": [{"text": "be brief"}]}}
    d = (await call("gemini", body=body)).json()
    (cand,) = d["candidates"]
    assert cand["content"] == {"parts": [{"text": "echo: hello world"}], "role": "model"}
    assert (cand["finishReason"], cand["index"]) == ("STOP", 0)
    assert d["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 3,
                                  "totalTokenCount": 7}
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
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "echo: one two")
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 3  # cumulative


async def test_gemini_stream_without_alt_sse_is_a_json_array(
        fake: FakeServer, client: httpx.AsyncClient, body_for: Any) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    r = await client.post(url, json=body_for("gemini", "a b"), params={"key": "k"})
    chunks = json.loads(r.text)
    assert isinstance(chunks, list) and len(chunks) == 3
    assert chunks[-1]["modelVersion"] == "gemini-1.5-pro"


async def test_gemini_function_call(call: Any, parse_sse_json: Any) -> None:
    d = (await call("gemini", "use the tool", tools=["lookup"])).json()
    part = d["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "lookup", "args": {"q": "use the tool"}}}
    chunks = parse_sse_json((await call("gemini", "use the tool", stream=True,
                                        tools=["lookup"])).text)
    assert len(chunks) == 1 and "functionCall" in chunks[0]["candidates"][0]["content"]["parts"][0]


async def test_gemini_function_response_turn(call: Any) -> None:
    body = {"contents": [
        {"role": "user", "parts": [{"text": "use the tool"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup",
                                                         "response": {"temp": 21}}}]}],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}]}
    d = (await call("gemini", body=body)).json()
    assert d["candidates"][0]["content"]["parts"] == [{"text": 'tool result: {"temp":21}'}]


async def test_gemini_key_in_query_and_auth_error(fake: FakeServer, client: httpx.AsyncClient,
                                                  call: Any, body_for: Any) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-1.5-flash:generateContent"
    assert (await client.post(url, json=body_for("gemini", "x"),
                              params={"key": "k"})).status_code == 200
    r = await client.post(url, json=body_for("gemini", "x"))
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED" and r.json()["error"]["code"] == 401


async def test_gemini_empty_contents_is_invalid_argument(call: Any) -> None:
    r = await call("gemini", body={"contents": []})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_gemini_models_listing(fake: FakeServer, client: httpx.AsyncClient) -> None:
    d = (await client.get(fake.base_url("gemini") + "/v1beta/models",
                          headers={"x-goog-api-key": "k"})).json()
    first = d["models"][0]
    assert first["name"] == "models/gemini-1.5-flash"
    assert "generateContent" in first["supportedGenerationMethods"]
    assert "displayName" in first


# -- ollama ------------------------------------------------------------------------------------
async def test_ollama_streams_by_default_as_ndjson(call: Any, body_for: Any) -> None:
    body = body_for("ollama", "one two")
    del body["stream"]
    r = await call("ollama", body=body)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["done"] for x in lines] == [False, False, False, True]
    assert "".join(x["message"]["content"] for x in lines) == "echo: one two"
    last = lines[-1]
    assert (last["done_reason"], last["prompt_eval_count"], last["eval_count"]) == ("stop", 2, 3)


async def test_ollama_json_shape_without_a_key(call: Any) -> None:
    d = (await call("ollama", "hi", max_tokens=1)).json()
    assert d["message"] == {"role": "assistant", "content": "echo:"}
    assert (d["done"], d["done_reason"], d["model"]) == (True, "length", "llama3.2")
    assert d["created_at"].endswith("Z") and d["eval_count"] == 1


async def test_ollama_tool_calls(call: Any) -> None:
    d = (await call("ollama", "use the tool", tools=["search"])).json()
    assert d["message"]["tool_calls"] == [
        {"function": {"name": "search", "arguments": {"q": "use the tool"}}}]
    lines = [json.loads(x) for x in (await call("ollama", "use the tool", stream=True,
                                                tools=["search"])).text.splitlines()]
    assert lines[0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    assert lines[-1]["done"] is True


async def test_ollama_errors_and_tags(call: Any, fake: FakeServer,
                                      client: httpx.AsyncClient) -> None:
    r = await call("ollama", body={"messages": []})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = await call("ollama", headers={"x-fake": "404"})
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    tags = (await client.get(fake.base_url("ollama") + "/api/tags")).json()
    m = tags["models"][0]
    assert m["name"] == m["model"] == "llama3.2:latest"
    assert {"modified_at", "size", "digest", "details"} <= set(m)


async def test_models_are_configurable() -> None:
    async with FakeServer(models={"ollama": ["tiny:1b"]}) as srv, httpx.AsyncClient() as c:
        tags = (await c.get(srv.base_url("ollama") + "/api/tags")).json()
        assert [m["name"] for m in tags["models"]] == ["tiny:1b"]
