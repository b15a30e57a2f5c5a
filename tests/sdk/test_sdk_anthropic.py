"""The official ``anthropic`` SDK against the fake: it authenticates with ``Authorization: Bearer``
and a newer ``anthropic-version``; messages and streams (text, thinking with signatures, tool use)
parse into its typed blocks and usage (prompt-cache counts included); statuses and in-stream errors
raise its own errors; refusals are BadRequestErrors with the API's message."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

from engine.fake import FakeServer

MODEL = "claude-sonnet-4-5"
HI = [{"role": "user", "content": "hello there"}]
THINK = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def tool(weather: dict[str, Any]) -> dict[str, Any]:
    return {"name": "get_weather", "description": "Weather", "input_schema": weather}


def test_the_sdks_own_headers_are_accepted(claude: anthropic.Anthropic, fake: FakeServer) -> None:
    claude.messages.create(model=MODEL, max_tokens=64, messages=HI)  # type: ignore[arg-type]
    headers = fake.requests[-1]["headers"]
    assert "authorization" in headers and "x-api-key" not in headers  # Bearer, as SDK 2.x does
    assert anthropic._constants.ANTHROPIC_API_VERSION > "2023-06-01"  # and a newer version


def test_plain_message(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HI,  # type: ignore
        system="be brief",
    )
    assert isinstance(msg, Message) and msg.id.startswith("msg_")
    assert (msg.model, msg.role, msg.stop_reason, msg.stop_sequence) == (MODEL, "assistant", "end_turn", None)
    assert msg.content == [TextBlock(type="text", text="echo: hello there", citations=None)]
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 3)
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (0, 0)
    assert msg.usage.service_tier == "standard"
    assert msg._request_id is not None and msg._request_id.startswith("req_")


def test_cache_usage_parses_into_the_typed_usage(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HI,  # type: ignore
        extra_headers={"x-fake": "cached=2048 cache_write=100"},
    )
    usage = msg.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        2,
        2048,
        100,
    )
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 100


def test_stream_accumulates_text_and_usage(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=HI,  # type: ignore
        extra_headers={"x-fake": "cached=10"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello there" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)
    assert final.usage.cache_read_input_tokens == 10


def test_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=HI,  # type: ignore
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens == 2
    assert delta.type == "message_delta" and delta.usage.output_tokens == 3
    assert delta.usage.input_tokens == 2  # cumulative, final


def test_thinking_blocks_with_signatures(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=2048,
        messages=HI,  # type: ignore
        thinking=THINK,
    )  # type: ignore[arg-type]
    thinking, text = msg.content
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "thinking: hello there"
    assert thinking.signature
    assert isinstance(text, TextBlock) and text.text == "echo: hello there"
    assert msg.usage.output_tokens == 3 + 3


def test_streamed_thinking_gives_thinking_and_signature_events(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=2048,
        messages=HI,  # type: ignore
        thinking=THINK,
    ) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_message()
    thoughts = "".join(e.thinking for e in events if e.type == "thinking")
    signatures = [e.signature for e in events if e.type == "signature"]
    assert thoughts == "thinking: hello there" and len(signatures) == 1
    block = final.content[0]
    assert isinstance(block, ThinkingBlock) and block.signature == signatures[0]
    assert final.content[1].type == "text"


def test_tool_use(claude: anthropic.Anthropic, tool: dict[str, Any]) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[tool],  # type: ignore
        messages=[{"role": "user", "content": "weather? use the tool"}],
    )
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert isinstance(block, ToolUseBlock) and block.name == "get_weather"
    assert block.input == {"city": "weather? use the tool", "unit": "celsius", "days": 1}


def test_streamed_tool_use_and_the_result_turn(claude: anthropic.Anthropic, tool: dict[str, Any]) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[tool],  # type: ignore
        messages=HI,
        extra_headers={"x-fake": "tool"},
    ) as stream:
        partial = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    (block,) = final.content
    assert isinstance(block, ToolUseBlock) and block.input["unit"] == "celsius"
    assert partial[0] == "" and len(partial) > 1
    reply = claude.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[tool],
        messages=[
            *HI,
            {"role": "assistant", "content": final.content},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "tool result: sunny"


def test_thinking_with_tools_round_trip(claude: anthropic.Anthropic, tool: dict[str, Any]) -> None:
    """The SDK hands the signed thinking block back with the tool result, as the API requires;
    dropping it is refused."""
    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 2048, "thinking": THINK, "tools": [tool]}
    first = claude.messages.create(**kw, messages=HI, extra_headers={"x-fake": "tool"})
    thinking, use = first.content
    assert thinking.type == "thinking" and use.type == "tool_use"
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}
    reply = claude.messages.create(
        **kw, messages=[*HI, {"role": "assistant", "content": first.content}, result]
    )
    assert reply.content[-1].type == "text" and reply.content[-1].text == "tool result: sunny"
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        claude.messages.create(**kw, messages=[*HI, {"role": "assistant", "content": [use]}, result])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stop_sequences": ["\n\n"]}, "stop_sequences: each stop sequence must contain non-whitespace"),
        ({"stop_sequences": [" "]}, "stop_sequences: each stop sequence must contain non-whitespace"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 100}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"extra_body": {"temperature": 2.0}},  # SDK 2.x has no temperature argument any more
            "temperature: Input should be less than or equal to 1",
        ),
        (
            {"tools": [{"name": "f", "input_schema": {"properties": {}}}]},
            "tools.0.custom.input_schema.type: Field required",
        ),
        (
            {"extra_body": {"max_completion_tokens": 5}},
            "max_completion_tokens: Extra inputs are not permitted",
        ),
    ],
)
def test_refusals_raise_bad_request(
    claude: anthropic.Anthropic, kwargs: dict[str, Any], message: str
) -> None:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": HI, **kwargs}
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(**params)
    err = info.value
    assert (err.status_code, err.type, err.api_message) == (400, "invalid_request_error", message)
    assert err.request_id is not None


def test_an_invalid_version_header_is_refused(fake: FakeServer) -> None:
    with anthropic.Anthropic(
        base_url=fake.url,
        api_key="k",
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01, 2023-06-01"},
    ) as c:
        with pytest.raises(anthropic.BadRequestError) as info:
            c.messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert info.value.api_message == ('anthropic-version: "2023-06-01, 2023-06-01" is not a valid version')


@pytest.mark.parametrize(
    ("directive", "error"),
    [
        ("429 retry_after=1", anthropic.RateLimitError),
        ("500", anthropic.InternalServerError),
        ("529", anthropic.InternalServerError),
        ("400", anthropic.BadRequestError),
        ("404", anthropic.NotFoundError),
        ("413", anthropic.APIStatusError),
    ],
)
def test_injected_statuses_raise_the_sdks_errors(
    claude: anthropic.Anthropic, directive: str, error: type[anthropic.APIStatusError]
) -> None:
    with pytest.raises(error) as info:
        claude.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=HI,  # type: ignore[arg-type]
            extra_headers={"x-fake": directive},
        )
    assert info.value.status_code == int(directive.split()[0])
    assert info.value.api_message is not None and "(injected)" in info.value.api_message


def test_keys_the_server_does_not_know(fake: FakeServer) -> None:
    fake.require_key = "sk-ant-right"
    for client in (
        anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-wrong", max_retries=0),
        anthropic.Anthropic(base_url=fake.url, auth_token="tok", max_retries=0),
    ):
        with client, pytest.raises(anthropic.AuthenticationError) as info:
            client.messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore
        assert info.value.api_message == "Invalid bearer token"
    with anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-right", max_retries=0) as ok:
        assert ok.messages.create(model=MODEL, max_tokens=8, messages=HI).content  # type: ignore


def test_in_stream_error_raises_with_the_error_body(claude: anthropic.Anthropic) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with claude.messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=HI,  # type: ignore
            extra_headers={"x-fake": "stream_error"},
        ) as stream:
            seen.extend(stream.text_stream)
    err = info.value
    assert err.status_code == 200  # the stream had started: the HTTP status was 200
    assert (err.type, err.api_message) == ("overloaded_error", "Overloaded (injected)")
    assert seen  # the text before the error was delivered


def test_models_list(claude: anthropic.Anthropic) -> None:
    assert [m.id for m in claude.models.list()] == ["claude-3-5-haiku-latest", "claude-3-5-sonnet-latest"]


async def test_async_client_streams(fake: FakeServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=fake.url, api_key="k", max_retries=0) as client:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
            text = "".join([t async for t in stream.text_stream])
    assert text == "echo: hello there"
