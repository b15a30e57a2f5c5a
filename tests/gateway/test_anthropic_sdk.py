"""The official ``anthropic`` SDK as a client of the gateway (uvicorn on loopback, in a thread
of this process: ``gwserve.Served``) over the fake provider: plain, streamed (the SDK's
accumulated message equals the whole answer), tools, images, thinking with signatures handed
back, beta flags, count_tokens, structured output parsed, the models pages, every error as the
SDK's own typed exception, and a stream cut after its first event raising, not ending."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from gwserve import Served
from pydantic import BaseModel

from engine.fake import FakeServer
from engine.gateway.anthropic import ERROR_TYPES

KEYS = {
    "TEAM_KEY": "sk-team-0123456789",
    "OTHER_KEY": "sk-other-0123456789",
    "TIGHT_KEY": "sk-tight-0123456789",
}
CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 1, backoff: {base: 10ms, factor: 2, max: 20ms}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456, models: {m: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-3-5-haiku-latest: {}}}
routes:
  - match: {model: anth}
    to: anth/claude-3-5-haiku-latest
  - match: {model: gpt}
    to: a/m
  - match: {model: slow}
    to: a/m
    deadline: 300ms
server:
  keys:
    team: {key: "${TEAM_KEY}", models: [anth, gpt, slow, missing]}
    other: {key: "${OTHER_KEY}", models: [gpt]}
    tight: {key: "${TIGHT_KEY}", limits: {rpm: 1}}
  max_body: 64KB
  keepalive: 50ms
"""
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


_CLIENTS: list[anthropic.Anthropic] = []


def client(gw: Served, key: str = KEYS["TEAM_KEY"]) -> anthropic.Anthropic:
    """An SDK client of the gateway (no retries), closed after the test."""
    sdk = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=10)
    _CLIENTS.append(sdk)
    return sdk


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_plain(gateway: Served, fake: FakeServer) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="anth", max_tokens=64, messages=user("hello there")
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello there"
    assert message.model == "anth" and message.stop_reason == "end_turn" and message.id.startswith("msg_")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert (
        raw.headers["x-engine-provider"] == "anth"
        and raw.headers["x-engine-model"] == "claude-3-5-haiku-latest"
    )
    assert "sk-team" not in str(fake.requests[-1])  # the client's key never goes upstream


@pytest.mark.parametrize("model", ["anth", "gpt"])
def test_streamed_accumulates_to_the_whole_answer(gateway: Served, fake: FakeServer, model: str) -> None:
    sdk = client(gateway)
    whole = sdk.messages.create(model=model, max_tokens=64, messages=user("say a few words"))
    with sdk.messages.stream(model=model, max_tokens=64, messages=user("say a few words")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == whole.content[0].text
    skip = {"id", "usage"}
    assert final.model_dump(exclude=skip) == whole.model_dump(exclude=skip)
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        assert getattr(final.usage, key) == getattr(whole.usage, key), key


@pytest.mark.parametrize("model", ["anth", "gpt"])
def test_tools(gateway: Served, model: str) -> None:
    sdk = client(gateway)
    message = sdk.messages.create(
        model=model, max_tokens=64, tools=[WEATHER], messages=user("use a tool for Paris")
    )
    call = message.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and isinstance(call.input, dict)
    assert message.stop_reason == "tool_use"
    follow = [
        *user("use a tool for Paris"),
        {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    answer = sdk.messages.create(model=model, max_tokens=64, tools=[WEATHER], messages=follow)
    assert answer.content[0].text == "tool result: sunny"
    with sdk.messages.stream(
        model=model, max_tokens=64, tools=[WEATHER], messages=user("use a tool for Paris")
    ) as s:
        final = s.get_final_message()
    assert final.content[-1].type == "tool_use" and final.content[-1].input == call.input


@pytest.mark.parametrize("model", ["anth", "gpt"])
def test_images(gateway: Served, fake: FakeServer, model: str) -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this"},
    ]
    message = client(gateway).messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text == "echo: what is this"
    sent = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert PNG in str(sent)


def test_thinking_with_signatures_round_trips(gateway: Served, fake: FakeServer) -> None:
    sdk = client(gateway)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    ask = user("use a tool for Paris")
    with sdk.messages.stream(
        model="anth", max_tokens=2048, thinking=thinking, tools=[WEATHER], messages=ask
    ) as s:
        first = s.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature  # the signature the fake gave, relayed by signature_delta
    follow = [
        *ask,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "ok"}],
        },
    ]
    answer = sdk.messages.create(
        model="anth", max_tokens=2048, thinking=thinking, tools=[WEATHER], messages=follow
    )
    assert answer.content[0].type == "thinking" and answer.content[-1].text == "tool result: ok"
    assert fake.requests[-1]["body"]["messages"][1]["content"][0]["signature"] == first.content[0].signature


def test_beta_headers_reach_anthropic(gateway: Served, fake: FakeServer) -> None:
    sdk = client(gateway)
    sdk.beta.messages.create(
        model="anth", max_tokens=64, messages=user("hi"), betas=["token-efficient-tools-2025-02-19"]
    )
    assert fake.requests[-1]["protocol"]["anthropic-beta"] == "token-efficient-tools-2025-02-19"


def test_count_tokens(gateway: Served, fake: FakeServer) -> None:
    sdk = client(gateway)
    counted = sdk.messages.count_tokens(model="anth", system="Be terse.", messages=user("one two three four"))
    assert counted.input_tokens == 6 and fake.requests[-1]["path"].endswith("/messages/count_tokens")
    estimated = sdk.messages.count_tokens(model="gpt", messages=user("one two three four"))
    assert estimated.input_tokens == len("one two three four") // 4 + 1


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("model", ["anth", "gpt"])
def test_parse_with_an_output_format(gateway: Served, model: str) -> None:
    sdk = client(gateway)
    want = City(name="a city", population=1)
    parsed = sdk.messages.parse(model=model, max_tokens=64, messages=user("a city"), output_format=City)
    assert parsed.parsed_output == want
    with sdk.messages.stream(model=model, max_tokens=64, messages=user("a city"), output_format=City) as s:
        assert s.get_final_message().parsed_output == want


def test_models_pages_and_retrieve(gateway: Served) -> None:
    sdk = client(gateway)
    first = sdk.models.list(limit=2)
    assert [m.id for m in first.data] == ["anth", "gpt"] and first.has_more and first.last_id == "gpt"
    assert [m.id for m in sdk.models.list(limit=2)] == ["anth", "gpt", "slow"]  # pages by after_id
    before = sdk.models.list(before_id="slow", limit=1)
    assert [m.id for m in before.data] == ["gpt"] and before.has_more
    assert sdk.models.retrieve("gpt").display_name == "gpt"
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("a/m")  # not this key's
    with pytest.raises(anthropic.BadRequestError, match="limit"):
        sdk.models.list(limit=0)


def test_an_estimated_count_counts_the_tools(gateway: Served) -> None:
    sdk = client(gateway)
    ask = user("one two three four")
    bare = sdk.messages.count_tokens(model="gpt", system="Be terse.", messages=ask).input_tokens
    tooled = sdk.messages.count_tokens(model="gpt", system="Be terse.", tools=[WEATHER], messages=ask)
    assert tooled.input_tokens - bare >= len(str(WEATHER)) // 5  # (Claude Code counts its tools so)


@pytest.mark.parametrize(
    ("key", "model", "text", "error", "status"),
    [
        ("sk-wrong-0123456789", "anth", "hi", anthropic.AuthenticationError, 401),
        (KEYS["OTHER_KEY"], "anth", "hi", anthropic.PermissionDeniedError, 403),
        (KEYS["TEAM_KEY"], "missing", "hi", anthropic.NotFoundError, 404),
        (KEYS["TEAM_KEY"], "anth", "x" * 70_000, anthropic.ContentTooLargeError, 413),
        (KEYS["TEAM_KEY"], "gpt", "hi [[fake: status=500]]", anthropic.InternalServerError, 502),
        (KEYS["TEAM_KEY"], "slow", "hi [[fake: latency=2s]]", anthropic.GatewayTimeoutError, 504),
        (KEYS["TEAM_KEY"], "anth", "hi [[fake: status=529]]", anthropic.OverloadedError, 529),
        (KEYS["TEAM_KEY"], "anth", "hi [[fake: status=400]]", anthropic.BadRequestError, 400),
    ],
)
def test_errors_raise_the_sdk_s_typed_exceptions(
    gateway: Served, fake: FakeServer, key: str, model: str, text: str, error: type[Exception], status: int
) -> None:
    with pytest.raises(error) as info:
        client(gateway, key).messages.create(model=model, max_tokens=64, messages=user(text))
    assert isinstance(info.value, anthropic.APIStatusError) and info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["message"]
    assert body["error"]["type"] == ERROR_TYPES[status]


def test_a_key_over_its_rpm_raises_rate_limit_error(gateway: Served, fake: FakeServer) -> None:
    sdk = client(gateway, KEYS["TIGHT_KEY"])
    sdk.messages.create(model="anth", max_tokens=16, messages=user("hi"))
    with pytest.raises(anthropic.RateLimitError) as info:
        sdk.messages.create(model="anth", max_tokens=16, messages=user("hi"))
    assert info.value.response.headers.get("retry-after")


def test_a_stream_cut_after_its_first_event_raises(gateway: Served, fake: FakeServer) -> None:
    sdk = client(gateway)
    seen = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(
            model="anth", max_tokens=64, messages=user("a b c d e f [[fake: die_after=5]]")
        ) as s:
            for ev in s:
                seen.append(ev.type)
    assert seen[:2] == ["message_start", "content_block_start"] and "text" in seen
    assert "message_stop" not in seen
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "api_error"


def test_keepalives_before_the_first_event_do_not_disturb_the_sdk(gateway: Served) -> None:
    import httpx

    ask = {"model": "anth", "max_tokens": 64, "stream": True, "messages": user("hi [[fake: latency=300ms]]")}
    headers = {"x-api-key": KEYS["TEAM_KEY"], "anthropic-version": "2023-06-01"}
    raw = httpx.post(f"{gateway.url}/v1/messages", json=ask, headers=headers, timeout=10).text
    assert raw.startswith(": ") and raw.index("event: message_start") > 0  # comments came first
    with client(gateway).messages.stream(
        model="anth", max_tokens=64, messages=user("hi [[fake: latency=300ms]]")
    ) as s:
        assert s.get_final_message().content[0].text == "echo: hi"


def test_a_stream_failing_before_its_first_event_is_an_http_error(gateway: Served) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        with client(gateway).messages.stream(
            model="gpt", max_tokens=64, messages=user("hi [[fake: status=500]]")
        ) as s:
            s.get_final_message()
    assert info.value.status_code == 502 and info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
