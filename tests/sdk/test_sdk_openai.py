"""The official ``openai`` SDK against the fake: answers and streams parse into its typed objects
(usage details included), tool calls validate against the tool's own pydantic model, injected
statuses and in-stream errors raise the SDK's own errors, and refusals are BadRequestErrors with
OpenAI's param and code."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

from engine.fake import FakeServer

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def tool(weather: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "get_weather", "parameters": weather}}


def test_plain_answer(oai: openai.OpenAI, fake: FakeServer) -> None:
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert isinstance(resp, ChatCompletion)
    assert resp.id.startswith("chatcmpl-") and resp.object == "chat.completion"
    assert resp.model == "gpt-4o-mini" and resp.created > 0
    assert resp.system_fingerprint and resp.service_tier == "default"
    assert resp._request_id is not None and resp._request_id.startswith("req_")
    choice = resp.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("echo: hello there", "stop")
    assert choice.message.refusal is None and choice.message.annotations == []
    usage = resp.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (2, 3)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert fake.requests[-1]["headers"].count("authorization") == 1


def test_cached_tokens_parse_into_prompt_tokens_details(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o",
        messages=HI,  # type: ignore[arg-type]
        extra_headers={"x-fake": "cached=1024"},
    )
    assert resp.usage is not None and resp.usage.prompt_tokens == 2 + 1024
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 1024


def test_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
            extra_headers={"x-fake": "cached=3"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 3)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_helper_accumulates_the_final_completion(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o-mini",
        messages=HI,  # type: ignore[arg-type]
        extra_headers={"x-fake": "chunks=5"},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta" and e.delta]
        final = stream.get_final_completion()
    assert len(deltas) == 5 and "".join(deltas) == "echo: hello there"
    assert final.choices[0].message.content == "echo: hello there"


def test_tool_call_arguments_follow_the_schema(oai: openai.OpenAI, tool: dict[str, Any]) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather in Paris? use the tool"}], tools=[tool]
    )  # type: ignore[list-item]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {
        "city": "weather in Paris? use the tool",
        "unit": "celsius",
        "days": 1,
    }


class Address(BaseModel):
    street: str
    zip_code: int


class Booking(BaseModel):
    """A pydantic model as a strict tool: nested models ($defs), enums, optional fields."""

    guests: int
    kind: Literal["suite", "single"]
    address: Address
    notes: str | None
    tags: list[str]


def test_strict_tool_arguments_validate_against_its_pydantic_model(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "book it"}],
        tools=[openai.pydantic_function_tool(Booking)],
        extra_headers={"x-fake": "tool"},
    )
    (call,) = resp.choices[0].message.tool_calls or []
    booking = call.function.parsed_arguments  # type: ignore[union-attr]
    assert isinstance(booking, Booking)
    assert (booking.kind, booking.address.zip_code, booking.notes) == ("suite", 1, "book it")


def test_streamed_tool_call(oai: openai.OpenAI, tool: dict[str, Any]) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o",
        messages=HI,  # type: ignore[arg-type]
        tools=[tool],
        extra_headers={"x-fake": "tool"},
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [e.name for e in done] == ["get_weather"]
    assert json.loads(done[0].arguments)["unit"] == "celsius"
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_result_turn(oai: openai.OpenAI, tool: dict[str, Any]) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    resp = oai.chat.completions.create(
        model="gpt-4o",
        tools=[tool],
        messages=[  # type: ignore
            *HI,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    )
    assert resp.choices[0].message.content == "tool result: sunny"


def test_reasoning_model_reports_reasoning_tokens(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="o4-mini",
        messages=HI,  # type: ignore[arg-type]
        max_completion_tokens=200,
        reasoning_effort="low",
    )
    assert resp.choices[0].message.content == "echo: hello there"
    usage = resp.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.completion_tokens == 3 + 3


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"])
def test_reasoning_models_refuse_max_tokens(oai: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=model, messages=HI, max_tokens=50)  # type: ignore
    err = info.value
    assert err.status_code == 400
    assert (err.param, err.code, err.type) == ("max_tokens", "unsupported_parameter", "invalid_request_error")
    assert "Use 'max_completion_tokens' instead." in err.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"extra_body": {"top_k": 40}}, None),
    ],
)
def test_refusals_raise_bad_request(oai: openai.OpenAI, kwargs: dict[str, object], param: str | None) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=HI, **kwargs)  # type: ignore
    assert info.value.param == param


@pytest.mark.parametrize(
    ("directive", "error"),
    [
        ("429 retry_after=1", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("400", openai.BadRequestError),
        ("404", openai.NotFoundError),
        ("403", openai.PermissionDeniedError),
    ],
)
def test_injected_statuses_raise_the_sdks_errors(
    oai: openai.OpenAI, directive: str, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,  # type: ignore[arg-type]
            extra_headers={"x-fake": directive},
        )
    assert "(injected)" in info.value.message
    assert info.value.request_id is not None


def test_wrong_key_is_an_authentication_error(oai: openai.OpenAI, fake: FakeServer) -> None:
    fake.require_key = "sk-other"
    with pytest.raises(openai.AuthenticationError) as info:
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert info.value.code == "invalid_api_key"


def test_in_stream_error_raises_api_error(oai: openai.OpenAI) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            stream=True,  # type: ignore[arg-type]
            extra_headers={"x-fake": "stream_error"},
        ):
            got.append(chunk.choices[0].delta.content or "")
    assert info.value.message == "Overloaded (injected)"
    assert "".join(got) and not isinstance(info.value, openai.APIStatusError)


def test_a_malformed_event_raises_the_sdks_json_error(oai: openai.OpenAI) -> None:
    with pytest.raises(json.JSONDecodeError):  # the SDK does not wrap it
        for _ in oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,  # type: ignore
            stream=True,
            extra_headers={"x-fake": "malformed"},
        ):
            pass


def test_a_dropped_stream_raises_a_connection_error(oai: openai.OpenAI) -> None:
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,  # type: ignore
            stream=True,
            extra_headers={"x-fake": "die_after=2"},
        ):
            got.append(chunk)
    assert len(got) == 2


def test_models_list(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["gpt-4o-mini", "gpt-4o"]


async def test_async_client_streams(fake: FakeServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake.base_url("openai"), api_key="sk", max_retries=0, timeout=5
    ) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)  # type: ignore[arg-type]
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "echo: hello there"
