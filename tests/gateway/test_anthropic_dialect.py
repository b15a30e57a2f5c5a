"""The Anthropic dialect against the real engine over the fake provider: Messages bodies read into
the engine's request, routed to a provider of kind anthropic (passed through as written: cache
control, thinking signatures, beta flags, metadata.user_id, top_k) and of kind openai (the
unified translation, what is not carried named in the plan), answers and streams written back in
Anthropic's exact shapes, errors typed, tokens counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError, RequestError, StreamInterrupted
from engine.fake import FakeServer
from engine.gateway.anthropic import AnthropicCountDialect, AnthropicDialect
from engine.result import Attempt, Done, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta, Usage

D = AnthropicDialect()
HEADERS = {"anthropic-version": "2023-06-01"}
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def body(model: str = "anth", text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 2048, "messages": [{"role": "user", "content": text}], **extra}


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of SSE bytes; every event has both lines."""
    out = []
    for chunk in data.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = chunk.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        name, payload = lines[0][7:], json.loads(lines[1][6:])
        assert payload["type"] == name
        out.append((name, payload))
    return out


async def relay(engine: Engine, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    data = b"".join([f async for f in D.stream(engine.stream(request), request)])
    return frames(data)


def last_body(fake: FakeServer) -> dict[str, Any]:
    return fake.requests[-1]["body"]


# -- parse ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
            "messages.0.content.0.source.media_type",
        ),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": [1]}, "stop_sequences.0"),
        ({"metadata": "u"}, "metadata"),
    ],
)
def test_a_bad_body_names_the_field_as_anthropic_does(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as info:
        D.parse({**body(), **bad}, HEADERS)
    assert info.value.field == field


def test_a_malformed_beta_flag_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(RequestError) as info:
        D.parse(body(), {**HEADERS, "anthropic-beta": "ok-2024-01-01, bad flag\r\nx-api-key: k"})
    assert info.value.field == "anthropic-beta" and "\n" not in str(info.value)


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    request = AnthropicCountDialect().parse(
        {"model": "anth", "messages": [{"role": "user", "content": "hi"}]}, {}
    )
    assert "max_tokens" not in request
    with pytest.raises(RequestError):
        D.parse({"model": "anth", "messages": []}, {})


def test_the_unified_translation_of_every_block() -> None:
    request = D.parse(
        body(
            system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "sig"},
                        {"type": "text", "text": "checking"},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "is_error": True,
                            "content": [{"type": "text", "text": "no such city"}],
                        },
                        {"type": "text", "text": "and?"},
                    ],
                },
            ],
            tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            stop_sequences=["END"],
            top_k=5,
            temperature=0.5,
            metadata={"user_id": "u-1"},
            service_tier="auto",
        ),
        {**HEADERS, "anthropic-beta": "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"},
    )
    assert request["system"] == "Be terse."
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "checking",
            "reasoning_content": "hm",
            "reasoning_signature": "sig",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "no such city"},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
    ]
    assert request["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather of a city",
            },
        }
    ]
    assert request["tool_choice"] == "required" and request["parallel_tool_calls"] is False
    assert (request["stop"], request["top_k"], request["temperature"]) == (["END"], 5, 0.5)
    assert request["metadata"] == {"user_id": "u-1"} and request["user"] == "u-1"
    native = request["anthropic"]
    assert native["beta"] == ["prompt-caching-2024-07-31", "token-efficient-tools-2025-02-19"]
    assert native["extra"] == {"service_tier": "auto"} and native["version"] == "2023-06-01"


# -- pass-through to kind anthropic ----------------------------------------------------------------


async def test_anthropic_gets_the_body_as_written_and_the_client_s_beta_flags(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    sent = body(
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "hello there",
                        "cache_control": {"type": "ephemeral", "ttl": "5m"},
                    }
                ],
            }
        ],
        tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        tool_choice={"type": "auto"},
        top_k=7,
        stop_sequences=["STOP"],
        metadata={"user_id": "u-9"},
        service_tier="standard_only",
    )
    request = D.parse(sent, {**HEADERS, "anthropic-beta": "prompt-caching-2024-07-31"})
    await make().route(request)
    upstream = last_body(fake)
    for key in ("system", "messages", "tools", "tool_choice", "top_k", "stop_sequences", "service_tier"):
        assert upstream[key] == sent[key], key
    assert upstream["metadata"] == {"user_id": "u-9"} and upstream["model"] == "claude-3-5-haiku-latest"
    assert fake.requests[-1]["protocol"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "x-api-key" in fake.requests[-1]["headers"]  # the provider's key, from routes.yaml


async def test_a_bad_beta_flag_reaching_the_fake_is_refused_as_anthropic_does(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    request = D.parse(body(), HEADERS)
    request["anthropic"]["beta"] = ["nodate"]  # well-formed for the header, not a real flag
    with pytest.raises(ProviderError) as info:
        await make().route(request)
    assert info.value.status == 400 and "anthropic-beta" in info.value.body


async def test_thinking_round_trips_with_its_signature(make: Callable[..., Engine], fake: FakeServer) -> None:
    engine = make()
    first = body(
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],
        messages=[{"role": "user", "content": "weather in Paris? [[fake: tool=get_weather]]"}],
    )
    request = D.parse(first, HEADERS)
    answer = D.answer(await engine.route(request), request)
    kinds = [b["type"] for b in answer["content"]]
    assert kinds == ["thinking", "tool_use"] and answer["stop_reason"] == "tool_use"
    assert answer["content"][0]["signature"]
    tool = answer["content"][1]
    follow = {
        **first,
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": answer["content"]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "sunny"}],
            },
        ],
    }
    request = D.parse(follow, HEADERS)
    again = D.answer(await engine.route(request), request)  # the fake checks the signature
    assert last_body(fake)["messages"][1]["content"][0] == answer["content"][0]
    assert again["content"][-1]["type"] == "text"


async def test_an_anthropic_answer_is_answered_as_it_came(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    request = D.parse(body(text="hi [[fake: cached=3, cache_write=2]]"), HEADERS)
    response = await make().route(request)
    answer = D.answer(response, request)
    assert answer["id"] == response.raw["id"] and answer["usage"] == response.raw["usage"]
    assert answer["model"] == "anth"  # the model the client asked for
    assert answer["content"] == [{"type": "text", "text": response.text}]


# -- other kinds -----------------------------------------------------------------------------------


async def test_openai_gets_the_translation_and_the_plan_names_what_is_lost(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    sent = body(
        model="g",
        text="use a tool",
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "u-2"},
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    request = D.parse(sent, {**HEADERS, "anthropic-beta": "prompt-caching-2024-07-31"})
    engine = make()
    answer = D.answer(await engine.route(request), request)
    upstream = last_body(fake)
    assert upstream["messages"][0] == {"role": "system", "content": "Be terse."}
    assert upstream["user"] == "u-2" and "anthropic" not in upstream and "thinking" not in upstream
    assert upstream["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert fake.requests[-1]["protocol"] == {}  # no anthropic headers to an openai provider
    assert answer["id"].startswith("msg_") and answer["content"][0]["type"] == "tool_use"
    assert answer["stop_reason"] == "tool_use" and isinstance(answer["content"][0]["input"], dict)
    notes = engine.plan(request).targets[0].notes
    assert any("cache_control is not sent" in n for n in notes)
    assert any("anthropic-beta prompt-caching-2024-07-31 is not sent" in n for n in notes)
    assert any("thinking enabled is not sent" in n for n in notes)


async def test_usage_counts_input_without_the_cache_as_anthropic_does() -> None:
    from engine.result import Response

    response = Response(
        "hi", "a", "m", "stop", usage=Usage(100, 7, cache_read_tokens=60, cache_write_tokens=30)
    )
    answer = D.answer(response, {"model": "chat"})
    assert answer["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 60,
        "output_tokens": 7,
    }
    assert answer["stop_reason"] == "end_turn" and answer["stop_sequence"] is None


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("length", "max_tokens"), ("content_filter", "refusal"), ("tool_calls", "tool_use"), (None, "end_turn")],
)
def test_stop_reasons(finish: str | None, stop: str) -> None:
    from engine.result import Response

    assert D.answer(Response("x", "a", "m", finish), {"model": "m"})["stop_reason"] == stop


# -- streams ---------------------------------------------------------------------------------------


async def test_a_thinking_stream_has_anthropic_s_exact_sequence(make: Callable[..., Engine]) -> None:
    request = D.parse(body(thinking={"type": "enabled", "budget_tokens": 1024}, stream=True), HEADERS)
    seen = await relay(make(), request)
    names = [n for n, _ in seen]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[1:3] == ["content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    starts = [d for n, d in seen if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text"]
    assert [s["index"] for s in starts] == [0, 1]
    deltas = {d["delta"]["type"]: d["index"] for n, d in seen if n == "content_block_delta"}
    assert deltas == {"thinking_delta": 0, "signature_delta": 0, "text_delta": 1}
    assert seen[0][1]["message"]["usage"]["input_tokens"] > 0
    final = seen[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn" and final["usage"]["output_tokens"] > 0


async def test_a_tool_stream_opens_a_tool_use_block(make: Callable[..., Engine]) -> None:
    request = D.parse(
        body(model="g", text="Paris? [[fake: tool=get_weather]]", tools=[WEATHER], stream=True), HEADERS
    )
    seen = await relay(make(), request)
    start = next(d for n, d in seen if n == "content_block_start")["content_block"]
    assert start["type"] == "tool_use" and start["name"] == "get_weather" and start["input"] == {}
    parts = "".join(d["delta"]["partial_json"] for n, d in seen if n == "content_block_delta")
    assert "city" in json.loads(parts)
    assert seen[-2][1]["delta"]["stop_reason"] == "tool_use"


async def _events(items: list[StreamEvent | Exception]) -> AsyncIterator[StreamEvent]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def test_a_new_block_whenever_the_kind_of_delta_changes() -> None:
    items: list[StreamEvent | Exception] = [
        ReasoningDelta("a"),
        ReasoningDelta("", signature="s1"),
        ReasoningDelta("", redacted="xx"),
        TextDelta("t"),
        ToolCallDelta(0, id="c1", name="f"),
        ToolCallDelta(0, arguments="{}"),
        ToolCallDelta(1, id="c2", name="g", arguments="{}"),
        Done("p", "m", "tool_calls"),
    ]
    seen = frames(b"".join([f async for f in D.stream(_events(items), {"model": "m"})]))
    blocks = [(d["index"], d["content_block"]["type"]) for n, d in seen if n == "content_block_start"]
    assert blocks == [
        (0, "thinking"),
        (1, "redacted_thinking"),
        (2, "text"),
        (3, "tool_use"),
        (4, "tool_use"),
    ]
    stops = [d["index"] for n, d in seen if n == "content_block_stop"]
    assert stops == [0, 1, 2, 3, 4]


async def test_an_error_after_the_first_frame_ends_with_an_error_event() -> None:
    broke = StreamInterrupted(
        "a stream broke", [Attempt("anth", "failover", 529, kind="status", detail="overloaded_error: x")]
    )
    seen = frames(b"".join([f async for f in D.stream(_events([TextDelta("hi"), broke]), {"model": "m"})]))
    assert seen[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "a stream broke"}},
    )
    assert "message_stop" not in [n for n, _ in seen]


async def test_an_error_before_the_first_frame_propagates() -> None:
    with pytest.raises(AllTargetsFailed):
        async for _ in D.stream(_events([AllTargetsFailed("none")]), {"model": "m"}):
            pass


async def test_a_stream_ending_without_its_final_event_is_not_a_clean_end() -> None:
    seen = frames(b"".join([f async for f in D.stream(_events([TextDelta("hi")]), {"model": "m"})]))
    assert seen[-1][0] == "error" and seen[-1][1]["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
    ],
)
def test_error_types_per_status(status: int, kind: str) -> None:
    assert D.error(status, "why") == {"type": "error", "error": {"type": kind, "message": "why"}}
    assert D.error(status, "why", kind="not_supported")["error"]["type"] == "not_supported"


def test_keepalive_is_an_sse_comment() -> None:
    assert D.keepalive.startswith(b":") and D.keepalive.endswith(b"\n\n")


# -- count_tokens ----------------------------------------------------------------------------------


async def test_count_tokens_asks_anthropic_and_estimates_elsewhere(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    engine = make()
    count = AnthropicCountDialect()
    words = "one two three four five six seven eight"
    asked = count.parse(
        {"model": "anth", "messages": [{"role": "user", "content": words}], "system": "Be terse."},
        {**HEADERS, "anthropic-beta": "token-counting-2024-11-01"},
    )
    assert await engine.count_tokens(asked) == 10  # the fake counts words
    assert fake.requests[-1]["path"].endswith("/messages/count_tokens")
    assert fake.requests[-1]["protocol"]["anthropic-beta"] == "token-counting-2024-11-01"
    assert set(last_body(fake)) == {"model", "messages", "system"}
    estimated = count.parse({"model": "g", "messages": [{"role": "user", "content": words}]}, HEADERS)
    before = len(fake.requests)
    assert await engine.count_tokens(estimated) == len(words) // 4 + 1
    assert len(fake.requests) == before  # no network for an estimate


async def test_count_tokens_surfaces_the_provider_s_refusal(make: Callable[..., Engine]) -> None:
    asked = AnthropicCountDialect().parse(
        {
            "model": "anth",
            "messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": ""}],
        },
        HEADERS,
    )
    with pytest.raises(ProviderError) as info:
        await make().count_tokens(asked)
    assert info.value.status == 400


async def test_other_top_level_fields_go_to_anthropic_which_judges_them(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    engine = make()
    known = D.parse(body(context_management={"edits": []}), HEADERS)
    await engine.route(known)
    assert last_body(fake)["context_management"] == {"edits": []}
    typo = D.parse(body(frobnicate=1), HEADERS)
    with pytest.raises(ProviderError) as info:
        await engine.route(typo)
    assert info.value.status == 400 and "frobnicate: Extra inputs are not permitted" in info.value.body
    elsewhere = D.parse(body(model="g", frobnicate=1), HEADERS)
    assert "not sent (Anthropic only): frobnicate" in engine.plan(elsewhere).targets[0].notes
    await engine.route(elsewhere)
    assert "frobnicate" not in last_body(fake)


def test_sync_engine_counts_tokens_too(make: Callable[..., Engine], fake: FakeServer) -> None:
    asked = AnthropicCountDialect().parse(
        {"model": "anth", "messages": [{"role": "user", "content": "a b c"}]}, {}
    )
    assert make().sync.count_tokens(asked) == 3


async def test_structured_output_is_asked_of_every_kind(
    make: Callable[..., Engine], fake: FakeServer
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    engine = make()
    asked = D.parse(
        body(model="g", output_config={"format": {"type": "json_schema", "schema": schema}}), HEADERS
    )
    assert asked["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert not any("output_config" in n for n in engine.plan(asked).targets[0].notes)  # carried
    answer = D.answer(await engine.route(asked), asked)
    assert json.loads(answer["content"][0]["text"]) == {"city": "hello there"}
    beta = D.parse(body(model="g", output_format={"type": "json_schema", "schema": schema}), HEADERS)
    assert beta["response_format"]["json_schema"]["schema"] == schema
    effort = {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    notes = engine.plan(D.parse(body(model="g", output_config=effort), HEADERS)).targets[0].notes
    assert "not sent (Anthropic only): output_config" in notes  # its effort is lost
    await engine.route(D.parse(body(output_config=effort), HEADERS))
    assert last_body(fake)["output_config"] == effort  # kind anthropic: as written
    with pytest.raises(RequestError, match=r"output_config\.format\.type"):
        D.parse(body(output_config={"format": {"type": "json_object"}}), HEADERS)
