"""A request's Anthropic-native part (``engine.providers.native``) through the kinds: the kind
anthropic renders it as written (system blocks, turns, tools, tool_choice, thinking, other
fields) with the client's beta flags and version as headers of the call and OpenAI's ``user`` as
``metadata.user_id``; every other kind leaves it out and names what it does not carry; the token
count's URL, body and answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.providers import get_kind
from engine.providers.base import WireError
from engine.templates import BUILTIN_DIR, compile_template

SYSTEM = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
TURNS = [
    {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
    {
        "role": "assistant",
        "content": [{"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "yo"}],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": [IMAGE]}],
    },
]
TOOLS = [{"type": "web_search_20250305", "name": "web_search"}]


def native_request(**part: Any) -> dict[str, Any]:
    native = {
        "system": SYSTEM,
        "messages": TURNS,
        "tools": TOOLS,
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        **part,
    }
    return {
        "model": "chat",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "Be terse.",
        "top_k": 3,
        "temperature": 0.5,
        "user": "u-7",
        "metadata": {"team": "a"},
        "anthropic": native,
    }


def render(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    name = get_kind(kind).default_template
    template = compile_template(name, (BUILTIN_DIR / name).read_text())
    body: dict[str, Any] = template.render_checked(**get_kind(kind).context(request, "m-1", False))
    return body


def test_kind_anthropic_renders_the_native_part_as_written() -> None:
    body = render("anthropic", native_request(extra={"service_tier": "auto", "container": "c-1"}))
    assert body["system"] == SYSTEM and body["messages"] == TURNS and body["tools"] == TOOLS
    assert body["tool_choice"] == {"type": "auto"} and body["thinking"]["budget_tokens"] == 1024
    assert (body["top_k"], body["temperature"], body["max_tokens"]) == (3, 0.5, 2048)  # as written
    assert body["metadata"] == {"user_id": "u-7"}  # never the routing metadata
    assert (body["service_tier"], body["container"]) == ("auto", "c-1")
    assert get_kind("anthropic").notes(native_request(), "m-1") == []


def test_kind_anthropic_sends_the_client_s_beta_flags_and_version() -> None:
    kind = get_kind("anthropic")
    request = native_request(beta=["prompt-caching-2024-07-31", "bad flag\r\nx: y"], version="2023-01-01")
    assert kind.request_headers(request) == (
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("anthropic-version", "2023-01-01"),
    )
    assert kind.request_headers({"model": "m", "messages": []}) == ()
    assert get_kind("openai").request_headers(request) == ()


@pytest.mark.parametrize("kind", ["openai", "gemini", "ollama"])
def test_other_kinds_leave_it_out_and_say_what_they_do_not_carry(kind: str) -> None:
    request = native_request(beta=["prompt-caching-2024-07-31"], extra={"service_tier": "auto"})
    text = json.dumps(render(kind, request))
    assert "cache_control" not in text and "web_search" not in text and "opaque" not in text
    notes = "\n".join(get_kind(kind).notes(request, "m-1"))
    for said in (
        "cache_control is not sent",
        "anthropic-beta prompt-caching-2024-07-31 is not sent",
        "redacted_thinking blocks are not sent",
        "is_error is not sent",
        "images inside a tool_result are not sent",
        "server tools are not sent: web_search",
        "thinking enabled is not sent",
        "not sent (Anthropic only): service_tier",
    ):
        assert said in notes, said


def test_openai_never_sends_the_native_part_as_an_extra_field() -> None:
    body = render("openai", native_request())
    assert "anthropic" not in body and body["user"] == "u-7"


def test_the_token_count() -> None:
    kind = get_kind("anthropic")
    assert kind.count_url("https://api.example/v1/") == "https://api.example/v1/messages/count_tokens"
    body = kind.count_body(native_request(), "m-1")
    assert set(body) == {"model", "messages", "system", "tools", "tool_choice", "thinking"}
    assert body["messages"] == TURNS
    assert kind.parse_count({"input_tokens": 12}) == 12
    with pytest.raises(WireError):
        kind.parse_count({"input_tokens": -1})
    assert get_kind("openai").count_url("https://x/v1") is None
