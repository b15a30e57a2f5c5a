"""The contract every provider kind keeps, held for each kind in ``engine.providers.KINDS`` over
loopback against the fake: a route answers in the unified shape, a stream yields the same answer
as deltas and one ``Done``, a tool call comes back as a tool call, an error status fails over (or
is fatal), an in-band error mid-stream keeps what came before it, usage and finish reasons mean
the same whatever the wire. A new kind gets every invariant by being registered (and its model
named in ``MODELS``).

Each kind's provider sits first in a priority group before ``spare`` (openai), so a failover is
visible; no retries, so every failure is one attempt."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import ProviderError, StreamInterrupted
from engine.fake import FakeServer
from engine.providers import KINDS
from engine.result import Done, Response, StreamEvent, TextDelta, ToolCallDelta

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-1.5-flash",
    "ollama": "llama3.2",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]


def config(fake: FakeServer) -> str:
    """One provider per kind (named after it, on its own path prefix), each first in a group
    ``via_KIND`` before ``spare``; a route per kind on ``model: KIND``."""
    lines = [
        "version: 1",
        "defaults: {speed: t, retry: transient, breaker: none, deadline: 5s}",
        "speeds:",
        "  t: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}",
        "providers:",
        f'  spare: {{kind: openai, base_url: "{fake.base_url("openai", "spare")}", '
        "api_key: k-spare, models: {m: {}}}",
    ]
    groups, routes = ["groups:"], ["routes:"]
    for kind in KINDS:
        lines.append(
            f'  {kind}: {{kind: {kind}, base_url: "{fake.base_url(kind, kind)}", '
            f"api_key: k-{kind}-123, models: {{{MODELS[kind]}: "
            "{price: {input: 1.0, output: 2.0}}}}"
        )
        groups.append(f"  via_{kind}: {{strategy: priority, targets: [{kind}/{MODELS[kind]}, spare/m]}}")
        routes.append(f"  - {{match: {{model: {kind}}}, to: via_{kind}}}")
    return "\n".join(lines + groups + routes) + "\n"


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def eng(make: Make, fake: FakeServer) -> Engine:
    return make(config(fake))


async def collect(eng: Engine, request: dict[str, Any]) -> list[StreamEvent]:
    return [event async for event in eng.stream(request)]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def target(kind: str) -> str:
    return f"{kind}/{MODELS[kind]}"


# -- route and stream ---------------------------------------------------------------------------


async def test_a_route_answers_in_the_unified_shape(
    eng: Engine, fake: FakeServer, ask: Ask, kind: str
) -> None:
    resp = await eng.route(ask(kind, "hello there"))
    assert isinstance(resp, Response)
    assert (resp.text, resp.provider, resp.model) == ("echo: hello there", kind, MODELS[kind])
    assert resp.finish_reason == "stop" and resp.tool_calls == ()
    assert [(a.target, a.outcome, a.status) for a in resp.attempts] == [(target(kind), "ok", 200)]
    assert fake.requests[-1]["kind"] == kind and fake.requests[-1]["stream"] is False


async def test_a_stream_yields_the_same_answer_as_deltas_and_one_done(
    eng: Engine, fake: FakeServer, ask: Ask, kind: str
) -> None:
    routed = await eng.route(ask(kind, "one two three four"))
    events = await collect(eng, ask(kind, "one two three four"))
    done = events[-1]
    assert isinstance(done, Done) and not any(isinstance(e, Done) for e in events[:-1])
    assert len([e for e in events if isinstance(e, TextDelta)]) > 1  # deltas, not one blob
    assert text_of(events) == routed.text
    assert (done.provider, done.model, done.finish_reason) == (kind, MODELS[kind], "stop")
    assert done.usage == routed.usage and done.cost == routed.cost
    assert done.ttft is not None and 0 < done.ttft <= done.latency
    assert [(a.target, a.outcome) for a in done.attempts] == [(target(kind), "ok")]
    assert fake.requests[-1]["kind"] == kind and fake.requests[-1]["stream"] is True


# -- tool calls ---------------------------------------------------------------------------------


async def test_a_tool_call_comes_back_as_a_tool_call(eng: Engine, ask: Ask, kind: str) -> None:
    resp = await eng.route(ask(kind, "find it [[fake: tool]]", tools=TOOLS))
    assert resp.finish_reason == "tool_calls"
    [call] = resp.tool_calls
    assert call.name == "lookup" and call.id
    assert json.loads(call.arguments) == {"q": "find it"}


async def test_a_streamed_tool_call_arrives_as_tool_call_deltas(eng: Engine, ask: Ask, kind: str) -> None:
    events = await collect(eng, ask(kind, "find it [[fake: tool]]", tools=TOOLS))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls and calls[0].name == "lookup" and {c.index for c in calls} == {0}
    assert json.loads("".join(c.arguments for c in calls)) == {"q": "find it"}
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["route", "stream"])
async def test_a_server_error_status_fails_over(
    eng: Engine, fake: FakeServer, ask: Ask, kind: str, stream: bool
) -> None:
    fake.program(f"/{kind}/", ["503"])
    if stream:
        done = (await collect(eng, ask(kind)))[-1]
        assert isinstance(done, Done)
        provider, attempts = done.provider, done.attempts
    else:
        resp = await eng.route(ask(kind))
        provider, attempts = resp.provider, resp.attempts
    assert provider == "spare"
    first = attempts[0]
    assert (first.target, first.outcome, first.status, first.kind) == (
        target(kind),
        "failover",
        503,
        "status",
    )
    assert [a.outcome for a in attempts] == ["failover", "ok"]


async def test_a_client_error_status_is_fatal_with_its_message(
    eng: Engine, fake: FakeServer, ask: Ask, kind: str
) -> None:
    fake.program(f"/{kind}/", ["400"])
    with pytest.raises(ProviderError) as info:
        await eng.route(ask(kind))
    [attempt] = info.value.attempts
    assert (attempt.target, attempt.outcome, attempt.status) == (target(kind), "fatal", 400)
    assert attempt.detail  # the provider's own message, whatever its error shape
    assert fake.stats(log=False)["paths"].get("/spare/v1/chat/completions", 0) == 0


async def test_an_in_band_error_mid_stream_keeps_every_delta_before_it(
    eng: Engine, ask: Ask, kind: str
) -> None:
    words = "a b c d e f g h"
    received = []
    for directive in ("stream_error", "stream_error chunk_delay=2ms"):  # one read, one each
        got: list[StreamEvent] = []
        with pytest.raises(StreamInterrupted) as info:
            async for event in eng.stream(ask(kind, f"{words} [[fake: {directive}]]")):
                got.append(event)
        assert not any(isinstance(e, Done) for e in got)
        last = info.value.attempts[-1]
        assert (last.target, last.outcome, last.kind) == (target(kind), "fatal", "protocol")
        assert info.value.received == text_of(got)
        received.append(info.value.received)
    # several deltas came before the error, the whole text did not
    assert received[0] == received[1] and received[0].startswith("echo: a b")
    assert received[0] != f"echo: {words}"


# -- usage and finish reasons ---------------------------------------------------------------------


async def test_usage_and_cost_mean_the_same_for_every_kind(eng: Engine, ask: Ask, kind: str) -> None:
    short = await eng.route(ask(kind, "hi [[fake: words=5]]"))
    longer = await eng.route(ask(kind, "hi there you all [[fake: words=9]]"))
    reference = await eng.route(ask("openai", "hi [[fake: words=5]]"))
    assert short.usage == reference.usage  # the same tokens, read off each kind's own fields
    assert short.usage.output_tokens == 5 and longer.usage.output_tokens == 9
    assert longer.usage.input_tokens > short.usage.input_tokens > 0
    assert short.cost == pytest.approx(
        (short.usage.input_tokens * 1.0 + short.usage.output_tokens * 2.0) / 1e6
    )


@pytest.mark.parametrize(
    ("text", "extra", "finish"),
    [
        ("one two three", {}, "stop"),
        ("one two three four five six", {"max_tokens": 3}, "length"),
        ("one two STOP three", {"stop": ["STOP"]}, "stop"),
        ("find it [[fake: tool]]", {"tools": TOOLS}, "tool_calls"),
    ],
    ids=["stop", "length", "stop-sequence", "tool-calls"],
)
async def test_finish_reasons_are_unified(
    eng: Engine, ask: Ask, kind: str, text: str, extra: dict[str, Any], finish: str
) -> None:
    resp = await eng.route(ask(kind, text, **extra))
    done = (await collect(eng, ask(kind, text, **extra)))[-1]
    assert isinstance(done, Done)
    assert resp.finish_reason == done.finish_reason == finish
    if finish == "length":
        assert resp.usage.output_tokens == 3
