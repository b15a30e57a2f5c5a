"""Fixtures for the fake provider's tests: an httpx client and helpers that call each wire format
the way a real client would and decode its streams. The server is the session's (``fake``, reset
for every test, from tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer

Call = Callable[..., Awaitable[httpx.Response]]

AUTH: dict[str, dict[str, str]] = {
    "openai": {"Authorization": "Bearer sk-test"},
    "anthropic": {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "g-test"},
    "ollama": {},
}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-1.5-flash",
    "ollama": "llama3.2",
}
# a tool's parameters: the fake fills them from the schema, so calls carry {"q": <user text>}
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def chat_body(
    kind: str,
    text: str,
    *,
    stream: bool = False,
    max_tokens: int | None = None,
    tools: list[str] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """A minimal chat request in ``kind``'s own wire format."""
    model = model or MODELS[kind]
    if kind == "gemini":
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        if tools:
            body["tools"] = [
                {"functionDeclarations": [{"name": t, "parametersJsonSchema": SCHEMA} for t in tools]}
            ]
        return body
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    if kind == "anthropic":
        body["max_tokens"] = max_tokens or 1024
        if tools:
            body["tools"] = [{"name": t, "input_schema": SCHEMA} for t in tools]
    elif kind == "ollama":
        body["stream"] = stream
        if max_tokens is not None:
            body["options"] = {"num_predict": max_tokens}
    elif max_tokens is not None:
        body["max_tokens"] = max_tokens
    if kind in ("openai", "ollama") and tools:
        body["tools"] = [{"type": "function", "function": {"name": t, "parameters": SCHEMA}} for t in tools]
    if stream and kind in ("openai", "anthropic"):
        body["stream"] = True
    return body


def chat_url(
    srv: FakeServer, kind: str, *, stream: bool = False, model: str | None = None, prefix: str = ""
) -> str:
    base = srv.base_url(kind, prefix)
    if kind == "openai":
        return base + "/chat/completions"
    if kind == "anthropic":
        return base + "/messages"
    if kind == "ollama":
        return base + "/api/chat"
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base}/v1beta/models/{model or MODELS['gemini']}:{action}"


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of every SSE event in a body (``\\n`` or ``\\r\\n`` line endings)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


def sse_json(text: str) -> list[Any]:
    """The JSON data of every SSE event, stopping at OpenAI's ``[DONE]``."""
    out = []
    for _, data in sse(text):
        if data == "[DONE]":
            break
        out.append(json.loads(data))
    return out


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


@pytest.fixture
def call(fake: FakeServer, client: httpx.AsyncClient) -> Call:
    """``await call(kind, text, stream=..., headers=..., **chat_body_kwargs)``: one chat call."""

    async def _call(
        kind: str,
        text: str = "hello world",
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        prefix: str = "",
        **kw: Any,
    ) -> httpx.Response:
        url = chat_url(fake, kind, stream=stream, model=kw.get("model"), prefix=prefix)
        payload = body if body is not None else chat_body(kind, text, stream=stream, **kw)
        return await client.post(url, json=payload, headers={**AUTH[kind], **(headers or {})})

    return _call


@pytest.fixture
def parse_sse() -> Callable[[str], list[tuple[str | None, str]]]:
    return sse


@pytest.fixture
def parse_sse_json() -> Callable[[str], list[Any]]:
    return sse_json


@pytest.fixture
def body_for() -> Callable[..., dict[str, Any]]:
    return chat_body


@pytest.fixture
def auth() -> dict[str, dict[str, str]]:
    """Headers carrying a key, per kind."""
    return AUTH


@pytest.fixture
def url_for(fake: FakeServer) -> Callable[..., str]:
    """``url_for(kind, stream=False, model=None, prefix="")``: the chat URL on the test server."""
    return lambda kind, **kw: chat_url(fake, kind, **kw)
