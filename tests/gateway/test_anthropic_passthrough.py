"""What a provider of kind ``anthropic`` answers reaches an Anthropic client of the gateway
whole, the official SDK as the client and the fake provider as Anthropic: a web search's
server-tool blocks and citations (JSON and streamed, event for event as the provider streamed
them), every ``stop_reason`` with its ``stop_sequence`` (and OpenAI's ``finish_reason`` for an
OpenAI client of the same provider), answers cached apart per ``anthropic-beta`` and
``anthropic-version``, a body of another content type refused with 400 in both dialects, and
an answer from the response cache or shared in flight (memory and Redis) that is the first one
block for block."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gwserve import Served

from engine.fake import FakeServer

KEYS = {"TEAM_KEY": "sk-team-0123456789"}
CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
cache:
  responses: {ttl: 10m, max_temperature: 0.1}
providers:
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-3-5-haiku-latest: {}}}
routes:
  - match: {model: anth}
    to: anth/claude-3-5-haiku-latest
server:
  keys:
    team: {key: "${TEAM_KEY}"}
"""
SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def sdk(gateway: Served) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEYS["TEAM_KEY"], max_retries=0, timeout=10)
    with client:
        yield client


@pytest.fixture
def direct(fake_server: FakeServer) -> Iterator[anthropic.Anthropic]:
    """The SDK on the fake provider itself: what Anthropic answered, for comparison."""
    client = anthropic.Anthropic(base_url=fake_server.url + "/anth", api_key="key-anth-1", max_retries=0)
    with client:
        yield client


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"max_tokens": 200, "messages": [{"role": "user", "content": text}], **extra}


def plain(value: Any) -> Any:
    """``value`` with the fake's per-request ids (``srvtoolu_fake0…1``) made one."""
    return json.loads(re.sub(r"fake\d{20}", "RID", json.dumps(value)))


def raw_events(client: anthropic.Anthropic, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream's events as sent (message_start and pings aside: the gateway's own)."""
    with client.messages.create(model=model, stream=True, **body) as stream:
        seen = [ev.model_dump(exclude_none=True) for ev in stream]
    return plain([e for e in seen if e["type"] not in ("message_start", "ping")])


def test_a_web_search_answer_comes_back_whole(sdk: anthropic.Anthropic, direct: anthropic.Anthropic) -> None:
    body = ask("search the web for the weather in Lisbon", tools=SEARCH)
    mine = sdk.messages.create(model="anth", **body)
    theirs = direct.messages.create(model="claude-3-5-haiku-latest", **body)
    assert [b.type for b in mine.content] == ["server_tool_use", "web_search_tool_result", "text", "text"]
    cited = mine.content[3]
    assert (
        cited.type == "text" and cited.citations and cited.citations[0].type == "web_search_result_location"
    )
    assert mine.usage.server_tool_use is not None and mine.usage.server_tool_use.web_search_requests == 1
    drop = {"id", "model"}
    assert plain(mine.model_dump(exclude=drop)) == plain(theirs.model_dump(exclude=drop))


@pytest.mark.parametrize("directive", ["", " [[fake: stop_reason=pause_turn]]"], ids=["cited", "paused"])
def test_a_streamed_web_search_is_relayed_event_for_event(
    sdk: anthropic.Anthropic, direct: anthropic.Anthropic, directive: str
) -> None:
    """Every block (server_tool_use with its input deltas, the result, text after text, the
    citations_delta) at the index the provider gave it, and its message_delta as sent."""
    body = ask("search for lisbon weather" + directive, tools=SEARCH)
    relayed = raw_events(sdk, "anth", body)
    sent = raw_events(direct, "claude-3-5-haiku-latest", body)
    assert relayed == sent
    kinds = [e["delta"]["type"] for e in relayed if e["type"] == "content_block_delta"]
    assert "input_json_delta" in kinds
    assert ("citations_delta" in kinds) is (not directive)
    with sdk.messages.stream(model="anth", **body) as stream:
        final = stream.get_final_message()
    whole = sdk.messages.create(model="anth", **body)
    assert plain(final.model_dump(exclude={"id", "usage"})) == plain(
        whole.model_dump(exclude={"id", "usage"})
    )
    assert final.stop_reason == ("pause_turn" if directive else "end_turn")
    assert final.usage.server_tool_use is not None and final.usage.server_tool_use.web_search_requests == 1


def test_a_stream_starts_with_the_providers_own_message_start(
    sdk: anthropic.Anthropic, direct: anthropic.Anthropic
) -> None:
    """Its message id and its usage (the provider's input count, not the gateway's estimate),
    under the model name the client asked for."""

    def start(client: anthropic.Anthropic, model: str) -> dict[str, Any]:
        with client.messages.create(model=model, stream=True, **ask("say hello to the gateway")) as stream:
            first = next(ev for ev in stream if ev.type != "ping")
        assert first.type == "message_start"
        return dict(first.message.model_dump(exclude_none=True))

    mine, theirs = start(sdk, "anth"), start(direct, "claude-3-5-haiku-latest")
    assert mine["model"] == "anth" and theirs["model"] == "claude-3-5-haiku-latest"
    assert re.fullmatch(r"msg_\w+", mine["id"]) and mine["id"] != theirs["id"]  # one per request
    assert plain({**mine, "model": None, "id": None}) == plain({**theirs, "model": None, "id": None})
    assert mine["usage"]["input_tokens"] == theirs["usage"]["input_tokens"] > 0


# (user text, extra fields, Anthropic's stop_reason and stop_sequence, OpenAI's finish_reason)
STOPS = {
    "end_turn": ("say hello", {}, ("end_turn", None), "stop"),
    "stop_sequence": (
        "say hello world twice",
        {"stop_sequences": ["world"]},
        ("stop_sequence", "world"),
        "stop",
    ),
    "pause_turn": ("hello [[fake: stop_reason=pause_turn]]", {}, ("pause_turn", None), "stop"),
    "refusal": ("hello [[fake: stop_reason=refusal]]", {}, ("refusal", None), "content_filter"),
    "max_tokens": ("one two three four five six", {"max_tokens": 2}, ("max_tokens", None), "length"),
    "tool_use": ("use the tool for Paris", {"tools": [WEATHER]}, ("tool_use", None), "tool_calls"),
}


@pytest.mark.parametrize("case", list(STOPS))
def test_every_stop_reason_comes_out_right(sdk: anthropic.Anthropic, gateway: Served, case: str) -> None:
    text, extra, (reason, sequence), finish = STOPS[case]
    body = ask(text, **extra)
    whole = sdk.messages.create(model="anth", **body)
    assert (whole.stop_reason, whole.stop_sequence) == (reason, sequence)
    with sdk.messages.stream(model="anth", **body) as stream:
        deltas = [ev for ev in stream if ev.type == "message_delta"]
        final = stream.get_final_message()
    assert len(deltas) == 1 and (deltas[0].delta.stop_reason, deltas[0].delta.stop_sequence) == (
        reason,
        sequence,
    )
    assert (final.stop_reason, final.stop_sequence) == (reason, sequence)
    assert plain([b.model_dump(exclude_none=True) for b in final.content]) == plain(
        [b.model_dump(exclude_none=True) for b in whole.content]
    )

    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["TEAM_KEY"], max_retries=0)
    with oai:
        messages: Any = [{"role": "user", "content": text}]
        kw: dict[str, Any] = {"max_tokens": extra.get("max_tokens", 200)}
        if "stop_sequences" in extra:
            kw["stop"] = extra["stop_sequences"]
        if "tools" in extra:
            kw["tools"] = [
                {
                    "type": "function",
                    "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]},
                }
            ]
        answer = oai.chat.completions.create(model="anth", messages=messages, **kw)
        assert answer.choices[0].finish_reason == finish
        chunks = list(oai.chat.completions.create(model="anth", messages=messages, stream=True, **kw))
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            finish
        ]


def test_the_cache_keeps_answers_apart_by_beta_flags_and_version(
    sdk: anthropic.Anthropic, fake: FakeServer
) -> None:
    """The same body with other ``anthropic-beta`` flags or another ``anthropic-version`` is
    another question upstream: a miss, never the answer given to the first."""
    body = ask("cache me please", extra_body={"temperature": 0})

    def cache_of(headers: dict[str, str]) -> str:
        raw = sdk.messages.with_raw_response.create(model="anth", extra_headers=headers, **body)
        return raw.headers["x-engine-cache"]

    beta = {"anthropic-beta": "token-efficient-tools-2025-02-19"}
    assert cache_of({}) == "miss"
    assert cache_of({}) == "hit"
    assert cache_of(beta) == "miss"
    assert cache_of(beta) == "hit"
    assert cache_of({"anthropic-beta": "context-1m-2025-08-07"}) == "miss"
    assert cache_of({"anthropic-version": "2024-01-01"}) == "miss"
    assert cache_of({"anthropic-version": "2024-01-01"}) == "hit"
    assert len(fake.requests) == 4  # one upstream call per distinct question


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/chat/completions", "openai"),
    ],
)
def test_a_body_that_is_not_json_by_its_content_type_is_400(gateway: Served, path: str, shape: str) -> None:
    headers = {"x-api-key": KEYS["TEAM_KEY"], "content-type": "text/plain", "anthropic-version": "2023-06-01"}
    reply = httpx.post(gateway.url + path, content=b'{"model": "anth"}', headers=headers)
    assert reply.status_code == 400
    error = reply.json()
    if shape == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert "content-type" in error["error"]["message"]
    else:
        assert (
            error["error"]["type"] == "invalid_request_error" and "content-type" in error["error"]["message"]
        )


# what only the provider's own message carries: (user text, extra fields, block types, stop)
CACHED = {
    "web_search": (
        "search the web for the weather in Porto",
        {"tools": SEARCH},
        ["server_tool_use", "web_search_tool_result", "text", "text"],
        ("end_turn", None),
    ),
    "pause_turn": (
        "search the web for Porto [[fake: stop_reason=pause_turn]]",
        {"tools": SEARCH},
        ["server_tool_use", "web_search_tool_result"],
        ("pause_turn", None),
    ),
    "stop_sequence": (
        "say cached hello world",
        {"stop_sequences": ["world"]},
        ["text"],
        ("stop_sequence", "world"),
    ),
    "refusal": ("cached hello [[fake: stop_reason=refusal]]", {}, ["text"], ("refusal", None)),
}


def cacheable(case: str, tag: str = "") -> dict[str, Any]:
    text, extra, _, _ = CACHED[case]
    return ask(text + tag, extra_body={"temperature": 0}, **extra)


def answered(sdk: anthropic.Anthropic, body: dict[str, Any], **headers: str) -> tuple[str, dict[str, Any]]:
    """``x-engine-cache`` and the answer's JSON as sent."""
    raw = sdk.messages.with_raw_response.create(model="anth", extra_headers=headers, **body)
    return raw.headers["x-engine-cache"], raw.http_response.json()


def expect(case: str, message: dict[str, Any]) -> None:
    """``message`` has what the provider's own message has for ``case`` (not a rebuilt one)."""
    _, _, kinds, stop = CACHED[case]
    assert [b["type"] for b in message["content"]] == kinds
    assert (message["stop_reason"], message["stop_sequence"]) == stop
    if case == "web_search":
        assert message["content"][3]["citations"][0]["type"] == "web_search_result_location"
        assert message["usage"]["server_tool_use"]["web_search_requests"] == 1


@pytest.mark.parametrize("case", list(CACHED))
def test_a_cached_answer_is_the_first_one_block_for_block(
    sdk: anthropic.Anthropic, fake: FakeServer, case: str
) -> None:
    """The second identical request is a hit and gets the very message the first got: its
    server-tool blocks, citations, stop_reason and stop_sequence. A stream is never cached: the
    same body streamed goes upstream and accumulates to the same blocks."""
    body = cacheable(case)
    state, first = answered(sdk, body)
    assert state == "miss"
    expect(case, first)
    state, again = answered(sdk, body)
    assert state == "hit" and again == first
    assert len(fake.requests) == 1
    with sdk.messages.stream(model="anth", **body) as stream:
        assert stream.response.headers["x-engine-cache"] == "none"
        final = stream.get_final_message()
    assert plain([b.model_dump(mode="json", exclude_none=True) for b in final.content]) == plain(
        [{k: v for k, v in b.items() if v is not None} for b in first["content"]]
    )
    assert (final.stop_reason, final.stop_sequence) == CACHED[case][3]
    assert len(fake.requests) == 2


def test_a_shared_answer_in_flight_is_the_leaders_block_for_block(gateway: Served, fake: FakeServer) -> None:
    """Two identical requests at once: one goes upstream, the other gets its answer (a hit),
    server-tool blocks and pause_turn included."""
    body = cacheable("pause_turn", " [[fake: latency=150ms]]")
    answers = asyncio.run(together(gateway.url, body, body))
    assert sorted(state for state, _ in answers) == ["hit", "miss"]
    (_, one), (_, two) = answers
    assert one == two
    expect("pause_turn", one)
    assert len(fake.requests) == 1


async def together(url: str, *bodies: dict[str, Any], urls: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The bodies sent at once (to ``urls[i]``, else ``url``): each answer's cache state and JSON."""
    async with anthropic.AsyncAnthropic(base_url=url, api_key=KEYS["TEAM_KEY"], max_retries=0) as client:

        async def one(i: int, body: dict[str, Any]) -> tuple[str, Any]:
            to = client.with_options(base_url=urls[i]) if urls else client
            raw = await to.messages.with_raw_response.create(model="anth", **body)
            return raw.headers["x-engine-cache"], raw.http_response.json()

        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


def test_through_redis_a_hit_and_a_shared_answer_are_the_first_one(
    fake_server: FakeServer, fake: FakeServer, redis_url: str
) -> None:
    """With ``cache.backend: redis://`` (the answer kept as JSON), two gateways on one Redis: a
    hit on the other one, and an answer shared in flight across them, are the first answer
    block for block; other ``anthropic-beta`` flags are another question (a miss)."""
    config = CONFIG.replace("cache:\n", f"cache:\n  backend: {redis_url}\n", 1)
    a, b = Served(config, fake_server, KEYS), Served(config, fake_server, KEYS)
    try:
        with (
            anthropic.Anthropic(base_url=a.url, api_key=KEYS["TEAM_KEY"], max_retries=0) as on_a,
            anthropic.Anthropic(base_url=b.url, api_key=KEYS["TEAM_KEY"], max_retries=0) as on_b,
        ):
            for case in ("web_search", "stop_sequence"):
                body = cacheable(case, " (redis)")
                state, first = answered(on_a, body)
                assert state == "miss"
                expect(case, first)
                assert answered(on_b, body) == ("hit", first)
            assert len(fake.requests) == 2
            beta = {"anthropic-beta": "token-efficient-tools-2025-02-19"}
            state, flagged = answered(on_b, cacheable("web_search", " (redis)"), **beta)
            assert state == "miss" and len(fake.requests) == 3
            expect("web_search", flagged)
        body = cacheable("pause_turn", " (redis) [[fake: latency=150ms]]")
        answers = asyncio.run(together(a.url, body, body, urls=(a.url, b.url)))
        assert sorted(state for state, _ in answers) == ["hit", "miss"]
        assert answers[0][1] == answers[1][1]
        expect("pause_turn", answers[0][1])
        assert len(fake.requests) == 4
    finally:
        a.stop()
        b.stop()
