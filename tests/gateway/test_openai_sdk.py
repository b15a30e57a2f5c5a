"""The official ``openai`` SDK as a client of the gateway over the fake provider: answers and
streams in OpenAI's shapes, the SDK's parse and stream helpers, every error as the SDK's own
typed exception with what its retries read, models, disconnects."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from gwserve import KEYS, Served
from pydantic import BaseModel

from engine.fake import FakeServer

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


_OPEN: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(served: Served, key: str | None = KEYS["TEAM_KEY"], **options: Any) -> openai.OpenAI:
    """An SDK client of the gateway (closed after the test), no retries of its own."""
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 10)
    c = openai.OpenAI(base_url=served.url + "/v1", api_key=key or "none", **options)
    _OPEN.append(c)
    return c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- answers ----------------------------------------------------------------------------------


def test_plain_answer_and_routing_headers(served: Served, fake: FakeServer) -> None:
    raw = client(served).chat.completions.with_raw_response.create(
        model="g",
        messages=user("hello gateway"),
        temperature=0,
        seed=7,
        user="u-1",
        extra_headers={"x-request-id": "my-id-1"},
    )
    done = raw.parse()
    assert done.object == "chat.completion"
    assert done.choices[0].message.content == "echo: hello gateway"
    assert done.choices[0].finish_reason == "stop"
    assert (
        done.usage is not None
        and done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    )
    assert (
        done.usage.prompt_tokens_details is not None and done.usage.prompt_tokens_details.cached_tokens == 0
    )
    h = raw.headers
    assert h["x-request-id"] == "my-id-1"
    assert (h["x-engine-route"], h["x-engine-provider"], h["x-engine-model"]) == ("g", "a", "m")
    assert h["x-engine-attempts"] == "1" and h["x-engine-cache"] == "none"
    assert float(h["x-engine-cost"]) > 0
    sent = fake.requests[-1]
    assert sent["body"]["seed"] == 7 and sent["body"]["user"] == "u-1"
    assert "key-a-123456" not in str(sent) and KEYS["TEAM_KEY"] not in str(sent)  # only header names


def test_the_clients_key_never_goes_upstream(served: Served, fake: FakeServer) -> None:
    fake.require_key = "key-a-123456"  # the fake refuses any other key: the provider's own is sent
    done = client(served).chat.completions.create(model="solo", messages=user("whose key"))
    assert done.choices[0].message.content == "echo: whose key"


def test_stream_with_usage(served: Served) -> None:
    chunks = list(
        client(served).chat.completions.create(
            model="g",
            messages=user("one two three four"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    )


def test_stream_without_include_usage_has_no_usage_chunk(served: Served) -> None:
    chunks = list(client(served).chat.completions.create(model="g", messages=user("hi"), stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a thing up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]


@pytest.mark.parametrize("model", ["g", "anth"])
def test_tool_calls_whole_and_streamed(served: Served, model: str) -> None:
    c = client(served)
    ask = user("find it [[fake: tool]]")
    done = c.chat.completions.create(model=model, messages=ask, tools=TOOLS, tool_choice="auto")  # type: ignore[arg-type]
    call = done.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and call.id
    assert done.choices[0].finish_reason == "tool_calls"
    streamed: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in c.chat.completions.create(model=model, messages=ask, tools=TOOLS, stream=True):  # type: ignore[arg-type]
        for d in chunk.choices[0].delta.tool_calls or []:
            slot = streamed.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += d.id or ""
            slot["name"] += (d.function.name or "") if d.function else ""
            slot["arguments"] += (d.function.arguments or "") if d.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert streamed[0]["name"] == "lookup" and streamed[0]["id"]
    assert json.loads(streamed[0]["arguments"]) == json.loads(call.function.arguments)
    assert finish == "tool_calls"


def test_tool_results_go_back_through(served: Served, fake: FakeServer) -> None:
    messages: list[dict[str, Any]] = [
        *user("find it"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found: 42"},
    ]
    client(served).chat.completions.create(model="solo", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    sent = fake.requests[-1]["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[2]["content"] == "found: 42"


def test_images_are_passed_on(served: Served, fake: FakeServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "what is this"}, image]
    done = client(served).chat.completions.create(
        model="solo", messages=[{"role": "user", "content": content}]
    )  # type: ignore[misc,list-item]
    assert done.choices[0].message.content
    assert fake.requests[-1]["body"]["messages"][0]["content"][1] == image


def test_reasoning_from_a_thinking_provider(served: Served) -> None:
    c = client(served)
    ask = user("why is the sky blue")
    done = c.chat.completions.create(model="anth", messages=ask, reasoning_effort="low", max_tokens=2000)
    message: Any = done.choices[0].message
    assert message.reasoning_content.startswith("thinking:")
    assert message.content == "echo: why is the sky blue"
    reasoning = text = ""
    for chunk in c.chat.completions.create(
        model="anth", messages=ask, reasoning_effort="low", max_tokens=2000, stream=True
    ):
        delta: Any = chunk.choices[0].delta
        reasoning += getattr(delta, "reasoning_content", None) or ""
        text += delta.content or ""
    assert reasoning == message.reasoning_content and text == message.content


# -- the SDK's helpers ------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("model", ["g", "anth"])
def test_parse_and_stream_with_a_pydantic_response_format(served: Served, model: str) -> None:
    c = client(served)
    done = c.chat.completions.parse(model=model, messages=user("a person"), response_format=Person)
    assert done.choices[0].message.parsed == Person(name="a person", age=1)
    with c.chat.completions.stream(model=model, messages=user("a person"), response_format=Person) as s:
        kinds = {event.type for event in s}
        final = s.get_final_completion()
    assert {"content.delta", "content.done"} <= kinds
    assert final.choices[0].message.parsed == Person(name="a person", age=1)


@pytest.mark.parametrize("model", ["g", "anth"])
def test_a_forced_tool_streams_into_parsed_arguments(served: Served, model: str) -> None:
    tool = openai.pydantic_function_tool(Person)
    with client(served).chat.completions.stream(
        model=model, messages=user("a person"), tools=[tool], tool_choice="required"
    ) as s:
        kinds = {event.type for event in s}
        final = s.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.parsed_arguments == Person(name="a person", age=1)
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_stream_answered_at_its_first_try_says_one_attempt(served: Served) -> None:
    with client(served).chat.completions.with_streaming_response.create(
        model="g", messages=user("hi"), stream=True
    ) as response:
        assert response.headers["x-engine-attempts"] == "1" and response.headers["x-engine-provider"] == "a"
        assert list(response.iter_lines())[-2:] == ["data: [DONE]", ""]


# -- errors, each the SDK's own exception ------------------------------------------------------


def test_missing_and_unknown_keys_are_401(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(served, key="sk-wrong").chat.completions.create(model="g", messages=user("x"))
    assert err.value.status_code == 401 and err.value.body["type"] == "authentication_error"  # type: ignore[index]
    response = httpx.post(served.url + "/v1/chat/completions", json={"model": "g", "messages": []})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_model_the_key_may_not_use_is_403(served: Served) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        client(served, key=KEYS["NARROW_KEY"]).chat.completions.create(model="g", messages=user("x"))


def test_no_route_is_404(served: Served) -> None:
    with pytest.raises(openai.NotFoundError, match="no route"):
        client(served, key=KEYS["OPS_KEY"]).chat.completions.create(model="unrouted", messages=user("x"))


def test_a_body_over_max_body_is_413(served: Served) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client(served).chat.completions.create(model="g", messages=user("x" * 30_000))
    assert err.value.status_code == 413


def test_a_keys_rpm_is_429_with_retry_after(served: Served) -> None:
    c = client(served, key=KEYS["LIMITED_KEY"])
    for _ in range(2):
        c.chat.completions.create(model="solo", messages=user("x"))
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="solo", messages=user("x"))
    assert int(err.value.response.headers["retry-after"]) >= 1


def test_every_target_failed_is_502(served: Served) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client(served).chat.completions.create(model="g", messages=user("x [[fake: status=500]]"))
    assert err.value.status_code == 502 and err.value.body["code"] == "all_targets_failed"  # type: ignore[index]


def test_the_sdk_does_not_retry_what_would_fail_again(served: Served, fake: FakeServer) -> None:
    with pytest.raises(openai.InternalServerError) as err:  # (the SDK retries a 502 by default)
        client(served, max_retries=2).chat.completions.create(
            model="solo", messages=user("x [[fake: status=401]]")
        )
    assert err.value.response.headers["x-should-retry"] == "false"
    assert len(fake.requests) == 1  # one try: the provider's 401 would come again


def test_a_502_says_when_the_providers_have_room_again(served: Served) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client(served).chat.completions.create(
            model="g", messages=user("x [[fake: status=429 retry_after=7]]")
        )
    headers = err.value.response.headers
    assert headers["retry-after"] == "7" and "x-should-retry" not in headers


def test_a_deadline_is_504(served: Served) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client(served).chat.completions.create(model="slow", messages=user("x [[fake: latency=1s]]"))
    assert err.value.status_code == 504


def test_a_providers_400_is_the_sdks_bad_request(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(served).chat.completions.create(model="solo", messages=user("x [[fake: status=400]]"))
    assert err.value.status_code == 400 and "400" in err.value.message


def test_a_request_the_engine_refuses_is_400(served: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client(served).chat.completions.create(model="g", messages=user("x"), temperature=-1)
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client(served).chat.completions.create(model="g", messages=user("x"), n=2)


def test_malformed_json_wrong_type_path_and_method(served: Served, key: str) -> None:
    auth = {"authorization": f"Bearer {key}"}
    url = served.url + "/v1/chat/completions"
    bad = httpx.post(url, content=b'{"model": ', headers={**auth, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    form = httpx.post(
        url, content=b"a=b", headers={**auth, "content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 400
    assert httpx.get(served.url + "/v2/nothing", headers=auth).status_code == 404
    wrong = httpx.get(url, headers=auth)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and "error" in wrong.json()
    assert bad.headers["x-request-id"]


def test_a_client_cannot_steer_a_url_through_the_model(served: Served) -> None:
    with pytest.raises(openai.BadRequestError):
        client(served).chat.completions.create(model="gpt-4/../../admin?x=1", messages=user("x"))


# -- streams that break, pings, disconnects ---------------------------------------------------


def test_a_stream_cut_after_its_first_event_raises_in_the_sdk(served: Served) -> None:
    stream = client(served).chat.completions.create(
        model="solo", messages=user("one two three four five [[fake: die_after=2]]"), stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError, match="stream broke"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert got and got[0]  # the first event arrived before the error


def test_keepalive_pings_while_the_first_event_is_awaited(served: Served, key: str) -> None:
    body = {"model": "solo", "stream": True, "messages": user("hi [[fake: latency=450ms]]")}
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=10
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    pings = [line for line in lines if line.startswith(":")]
    assert len(pings) >= 2 and lines.index(pings[0]) == 0
    assert lines[-1] == "data: [DONE]"
    assert response.headers["x-engine-route"] == "a/m"


def _status_of(fake: FakeServer, within: float = 5.0) -> Any:
    end = time.monotonic() + within
    while time.monotonic() < end:
        entries = [e for e in fake.requests if e["status"] is not None]
        if entries:
            return entries[-1]["status"]
        time.sleep(0.02)  # the fake runs on another thread: poll its log
    return None


def test_a_disconnect_mid_stream_cancels_the_upstream(served: Served, fake: FakeServer) -> None:
    stream = client(served).chat.completions.create(
        model="solo", messages=user("x [[fake: words=40 chunk_delay=100ms]]"), stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    assert _status_of(fake) == "client_closed"


def test_a_disconnect_while_waiting_cancels_the_try(
    served: Served, fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.access")
    with pytest.raises(openai.APITimeoutError):
        client(served, timeout=0.3).chat.completions.create(
            model="solo", messages=user("x [[fake: latency=1.5s]]"), extra_headers={"x-request-id": "gone-1"}
        )
    end = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < end and not lines:
        lines = [r.getMessage() for r in caplog.records if "request_id=gone-1" in r.getMessage()]
        time.sleep(0.02)
    assert lines and "outcome=cancelled" in lines[0]


# -- models ----------------------------------------------------------------------------------


def test_models_lists_what_the_key_may_request(served: Served) -> None:
    ids = [m.id for m in client(served).models.list()]
    assert ids[:4] == ["g", "solo", "anth", "slow"] and "a/m" not in ids  # team's globs
    narrow = [m.id for m in client(served, key=KEYS["NARROW_KEY"]).models.list()]
    assert narrow == ["solo"]
    every = [m.id for m in client(served, key=KEYS["OPS_KEY"]).models.list()]
    assert {"g", "a/m", "b/m", "anth/claude-3-5-haiku-latest"} <= set(every)


def test_models_retrieve_in_both_shapes(served: Served, key: str) -> None:
    c = client(served)
    got = c.models.retrieve("g")
    assert (got.id, got.object, got.owned_by) == ("g", "model", "engine")
    assert c.models.retrieve("gpt-4o").id == "gpt-4o"  # the key's glob and a route's match it
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("a/m")  # listed, but not for this key
    ops = client(served, key=KEYS["OPS_KEY"])
    assert ops.models.retrieve("anth/claude-3-5-haiku-latest").owned_by == "anth"
    with pytest.raises(openai.NotFoundError):
        ops.models.retrieve("routed-nowhere")
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-x..y")  # the glob matches, but no chat request could name it
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    theirs = httpx.get(served.url + "/v1/models/solo", headers=headers)
    assert theirs.json() == {
        "type": "model",
        "id": "solo",
        "display_name": "solo",
        "created_at": "1970-01-01T00:00:00Z",
    }
    missing = httpx.get(served.url + "/v1/models/a/m", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_models_in_anthropics_shape_when_asked(served: Served, key: str) -> None:
    listed = httpx.get(
        served.url + "/v1/models", headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
    )
    body = listed.json()
    assert [m["id"] for m in body["data"]][:2] == ["g", "solo"] and body["has_more"] is False
    assert body["data"][0]["type"] == "model" and body["first_id"] == "g"
