"""The Ollama wire format over real HTTP: NDJSON streams (the default), JSON answers, tool calls,
thinking, the tags listing and its plain-string errors."""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.fake import FakeServer


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
    assert list(last) == [
        "model",
        "created_at",
        "message",
        "done_reason",
        "done",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ]


async def test_ollama_json_shape_without_a_key(call: Any) -> None:
    d = (await call("ollama", "hi", max_tokens=1)).json()
    assert d["message"] == {"role": "assistant", "content": "echo:"}
    assert (d["done"], d["done_reason"], d["model"]) == (True, "length", "llama3.2")
    assert d["created_at"].endswith("Z") and d["eval_count"] == 1


async def test_ollama_tool_calls(call: Any) -> None:
    d = (await call("ollama", "use the tool", tools=["search"])).json()
    (tc,) = d["message"]["tool_calls"]
    assert tc["id"].startswith("call_")
    assert tc["function"] == {"index": 0, "name": "search", "arguments": {"q": "use the tool"}}
    lines = [
        json.loads(x)
        for x in (await call("ollama", "use the tool", stream=True, tools=["search"])).text.splitlines()
    ]
    assert lines[0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    assert lines[-1]["done"] is True


async def test_ollama_errors_and_tags(call: Any, fake: FakeServer, client: httpx.AsyncClient) -> None:
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


async def test_think_adds_message_thinking(call: Any, body_for: Any) -> None:
    body = {**body_for("ollama", "hi there"), "think": True}
    d = (await call("ollama", body=body)).json()
    assert d["message"] == {
        "role": "assistant",
        "content": "echo: hi there",
        "thinking": "thinking: hi there",
    }
    assert d["eval_count"] == 3 + 3
    lines = [
        json.loads(x)
        for x in (await call("ollama", body={**body, "stream": True, "think": "low"})).text.splitlines()
    ]
    thinking = "".join(x["message"].get("thinking", "") for x in lines)
    content = "".join(x["message"]["content"] for x in lines)
    assert (thinking, content) == ("thinking: hi there", "echo: hi there")
    first_content = next(i for i, x in enumerate(lines) if x["message"]["content"])
    assert all("thinking" in x["message"] for x in lines[:first_content])  # thoughts come first


async def test_ollama_refuses_wrong_types(call: Any, body_for: Any) -> None:
    r = await call("ollama", body={"model": "m", "messages": "hi"})
    assert r.status_code == 400 and r.json() == {
        "error": (
            "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"
        )
    }
    r = await call("ollama", body={**body_for("ollama", "hi"), "think": "max"})
    assert r.status_code == 400 and "invalid think value" in r.json()["error"]
