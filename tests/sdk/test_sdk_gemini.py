"""The official ``google-genai`` SDK against the fake: answers and SSE streams parse into its typed
responses (usage with cached and thought counts, thought parts, signed function calls), automatic
function calling runs a real round trip, statuses and in-stream errors raise ClientError or
ServerError, and what Google refuses (unknown names, empty text, a wrong key) is a ClientError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from engine.fake import FakeServer

Config = Callable[..., types.GenerateContentConfig]
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


def test_plain_answer(gemini: genai.Client, fake: FakeServer) -> None:
    resp = gemini.models.generate_content(model="gemini-2.0-flash", contents="hello there")
    assert resp.text == "echo: hello there"
    assert resp.model_version == "gemini-2.0-flash" and resp.response_id
    assert resp.candidates is not None
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (2, 3, 5)
    assert usage.thoughts_token_count is None and usage.cached_content_token_count is None
    assert fake.requests[-1]["path"] == "/v1/models/gemini-2.0-flash:generateContent"  # SDK 3.x


def test_cached_content_tokens(gemini: genai.Client, gemini_with: Config) -> None:
    resp = gemini.models.generate_content(
        model="gemini-2.0-flash", contents="hello there", config=gemini_with("cached=4096")
    )
    usage = resp.usage_metadata
    assert usage is not None and usage.cached_content_token_count == 4096
    assert usage.prompt_token_count == 2 + 4096
    assert usage.cache_tokens_details is not None
    assert usage.cache_tokens_details[0].token_count == 4096


def test_max_output_tokens_and_stop_sequences(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model="gemini-2.0-flash",
        contents="one two three",
        config=types.GenerateContentConfig(max_output_tokens=2, system_instruction="be brief"),
    )
    assert resp.candidates is not None
    assert resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert resp.text == "echo: one"
    resp = gemini.models.generate_content(
        model="gemini-2.0-flash",
        contents="one STOP two",
        config=types.GenerateContentConfig(stop_sequences=["STOP"]),
    )
    assert resp.text == "echo: one "


def test_stream(gemini: genai.Client) -> None:
    chunks = list(gemini.models.generate_content_stream(model="gemini-2.0-flash", contents="one two three"))
    assert "".join(c.text or "" for c in chunks) == "echo: one two three"
    counts = [c.usage_metadata.candidates_token_count for c in chunks if c.usage_metadata]
    assert counts == sorted(counts) and counts[-1] == 4  # cumulative
    last = chunks[-1].candidates
    assert last is not None and last[0].finish_reason == types.FinishReason.STOP


def test_a_thinking_model_counts_its_thoughts(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(model="gemini-2.5-flash", contents="hello there")
    usage = resp.usage_metadata
    assert usage is not None and usage.thoughts_token_count == 3
    assert usage.total_token_count == 2 + 3 + 3
    assert resp.text == "echo: hello there"
    off = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0))
    resp = gemini.models.generate_content(model="gemini-2.5-flash", contents="hi", config=off)
    assert resp.usage_metadata is not None and resp.usage_metadata.thoughts_token_count is None


def test_include_thoughts_gives_thought_parts(gemini: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    resp = gemini.models.generate_content(model="gemini-2.5-pro", contents="hello there", config=config)
    assert resp.candidates is not None and resp.candidates[0].content is not None
    parts = resp.candidates[0].content.parts or []
    assert [(p.thought, p.text) for p in parts] == [
        (True, "thinking: hello there"),
        (None, "echo: hello there"),
    ]
    assert resp.text == "echo: hello there"  # the SDK leaves thoughts out of .text
    chunks = list(
        gemini.models.generate_content_stream(model="gemini-2.5-pro", contents="hello there", config=config)
    )
    thought = "".join(
        p.text or ""
        for c in chunks
        if c.candidates and c.candidates[0].content
        for p in c.candidates[0].content.parts or ()
        if p.thought
    )
    assert thought == "thinking: hello there"


def test_function_call_from_a_json_schema(
    gemini: genai.Client, gemini_with: Config, weather: dict[str, Any]
) -> None:
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather", description="Weather", parameters_json_schema=weather
            )
        ]
    )
    resp = gemini.models.generate_content(
        model="gemini-2.5-flash",
        contents="weather in Paris",
        config=gemini_with("tool", tools=[tool], automatic_function_calling=NO_AFC),
    )
    (call,) = resp.function_calls or []
    assert call.name == "get_weather"
    assert call.args == {"city": "weather in Paris", "unit": "celsius", "days": 1}
    assert resp.candidates is not None and resp.candidates[0].content is not None
    part = (resp.candidates[0].content.parts or [])[0]
    assert isinstance(part.thought_signature, bytes) and part.thought_signature  # base64 decoded


def test_function_call_from_an_openapi_schema_streamed(gemini: genai.Client, gemini_with: Config) -> None:
    decl = types.FunctionDeclaration(
        name="book",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            required=["seats", "when"],
            properties={
                "seats": types.Schema(type=types.Type.INTEGER),
                "when": types.Schema(type=types.Type.STRING, format="date-time"),
            },
        ),
    )
    chunks = list(
        gemini.models.generate_content_stream(
            model="gemini-2.0-flash",
            contents="book",
            config=gemini_with(
                "tool", tools=[types.Tool(function_declarations=[decl])], automatic_function_calling=NO_AFC
            ),
        )
    )
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert [(fc.name, fc.args) for fc in calls] == [("book", {"seats": 1, "when": "2024-01-01T00:00:00Z"})]


def test_automatic_function_calling_round_trip(gemini: genai.Client, fake: FakeServer) -> None:
    asked: list[tuple[str, int]] = []

    def get_weather(city: str, days: int) -> dict[str, str]:
        """Weather for a city over some days."""
        asked.append((city, days))
        return {"forecast": "sunny"}

    resp = gemini.models.generate_content(
        model="gemini-2.0-flash",
        contents="use the tool for Paris",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )
    assert asked == [("use the tool for Paris", 1)]
    assert resp.text == 'tool result: {"result":{"forecast":"sunny"}}'  # how the SDK wraps it
    assert len(fake.requests) == 2  # the call, then the function response


def test_gemini_3_round_trip_keeps_the_thought_signature(gemini: genai.Client) -> None:
    """Gemini 3 refuses a function call handed back without its signature; the SDK keeps it."""

    def lookup(city: str) -> str:
        """Look a city up."""
        return "found"

    resp = gemini.models.generate_content(
        model="gemini-3-pro-preview",
        contents="use the tool",
        config=types.GenerateContentConfig(tools=[lookup]),
    )
    assert resp.text == 'tool result: {"result":"found"}'
    history = resp.automatic_function_calling_history or []
    assert history[1].parts and history[1].parts[0].thought_signature
    bare = types.Content(
        role="model", parts=[types.Part(function_call=types.FunctionCall(name="lookup", args={"city": "x"}))]
    )
    with pytest.raises(errors.ClientError, match="missing a thought_signature"):
        gemini.models.generate_content(
            model="gemini-3-pro-preview",
            contents=[history[0], bare, history[2]],
            config=types.GenerateContentConfig(tools=[lookup], automatic_function_calling=NO_AFC),
        )


@pytest.mark.parametrize(
    ("directive", "error", "code", "status"),
    [
        ("429", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("400", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("404", errors.ClientError, 404, "NOT_FOUND"),
        ("500", errors.ServerError, 500, "INTERNAL"),
        ("503", errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
def test_injected_statuses_raise_the_sdks_errors(
    gemini: genai.Client,
    gemini_with: Config,
    directive: str,
    error: type[errors.APIError],
    code: int,
    status: str,
) -> None:
    with pytest.raises(error) as info:
        gemini.models.generate_content(model="gemini-2.0-flash", contents="hi", config=gemini_with(directive))
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message is not None and "(injected)" in info.value.message


def test_in_stream_error_raises_server_error(gemini: genai.Client, gemini_with: Config) -> None:
    got: list[str] = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in gemini.models.generate_content_stream(
            model="gemini-2.0-flash", contents="a b c d e f", config=gemini_with("stream_error")
        ):
            got.append(chunk.text or "")
    assert (info.value.code, info.value.message) == (500, "Overloaded (injected)")
    assert got


@pytest.mark.parametrize(
    ("options", "contents", "message"),
    [
        (
            types.HttpOptions(extra_body={"stream": True}),
            "hi",
            'Invalid JSON payload received. Unknown name "stream": Cannot find field.',
        ),
        (
            types.HttpOptions(extra_body={"generationConfig": {"max_tokens": 5}}),
            "hi",
            "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': "
            "Cannot find field.",
        ),
        (
            None,
            "",
            "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have "
            "one initialized field",
        ),
    ],
)
def test_refusals_raise_client_error(
    gemini: genai.Client, options: types.HttpOptions | None, contents: str, message: str
) -> None:
    with pytest.raises(errors.ClientError) as info:
        gemini.models.generate_content(
            model="gemini-2.0-flash",
            contents=contents,
            config=types.GenerateContentConfig(http_options=options),
        )
    assert (info.value.code, info.value.status, info.value.message) == (400, "INVALID_ARGUMENT", message)


def test_a_wrong_key_is_api_key_invalid(gemini: genai.Client, fake: FakeServer) -> None:
    fake.require_key = "the-right-one"
    with pytest.raises(errors.ClientError) as info:
        gemini.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_models_list(gemini: genai.Client) -> None:
    names = [m.name for m in gemini.models.list()]
    assert names == ["models/gemini-1.5-flash", "models/gemini-1.5-pro"]


# google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_async_stream(fake: FakeServer) -> None:
    client = genai.Client(
        api_key="g",
        http_options=types.HttpOptions(base_url=fake.url, retry_options=types.HttpRetryOptions(attempts=1)),
    )
    try:
        stream = await client.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents="hello there"
        )
        text = "".join([c.text or "" async for c in stream])
    finally:
        await client.aio.aclose()
        client.close()
    assert text == "echo: hello there"
