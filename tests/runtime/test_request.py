"""Requests of the wrong shape raise ``RequestError`` (naming the field) from route, stream, plan
and route_sync before anything is sent; the request in flight is the engine's own copy."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import field_serializer

from engine.api import Engine
from engine.errors import EngineError, RequestError
from engine.fake import FakeServer
from engine.request import Message, Request, normalize_request
from engine.result import TextDelta
from engine.runtime.events import AttemptStarted

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

NAN, INF = float("nan"), float("inf")


def user(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def req(**fields: Any) -> dict[str, Any]:
    return {"model": "g", "messages": [user()], **fields}


# (request, field): each is refused with RequestError(field=...)
BAD: list[tuple[Any, str]] = [
    (["model", "g"], ""),
    ("g", ""),
    (None, ""),
    ({1: "x", "model": "g"}, ""),
    ({"messages": [user()]}, "model"),
    (req(model=None), "model"),
    (req(model=5), "model"),
    (req(model=""), "model"),
    (req(model="m" * 257), "model"),
    (req(messages="hi"), "messages"),
    (req(messages=user()), "messages"),
    (req(messages=["hi"]), "messages[0]"),
    (req(messages=[{"content": "hi"}]), "messages[0].role"),
    (req(messages=[user(), user(), {"role": "robot", "content": "hi"}]), "messages[2].role"),
    (req(messages=[{"role": 5, "content": "hi"}]), "messages[0].role"),
    (req(messages=[user(5)]), "messages[0].content"),
    (req(messages=[user({"text": "hi"})]), "messages[0].content"),
    (req(messages=[user(["hi"])]), "messages[0].content[0]"),
    (req(messages=[user([{"text": "hi"}])]), "messages[0].content[0].type"),
    (req(messages=[user([{"type": 1, "text": "hi"}])]), "messages[0].content[0].type"),
    (req(messages=[user([{"type": "text", "text": 5}])]), "messages[0].content[0].text"),
    (req(messages=[user(name=5)]), "messages[0].name"),
    (req(messages=[user(tool_call_id=["x"])]), "messages[0].tool_call_id"),
    (req(messages=[{"role": "assistant", "tool_calls": "f"}]), "messages[0].tool_calls"),
    (req(messages=[{"role": "assistant", "tool_calls": ["f"]}]), "messages[0].tool_calls[0]"),
    (
        req(messages=[{"role": "assistant", "tool_calls": [{"function": "f"}]}]),
        "messages[0].tool_calls[0].function",
    ),
    (req(max_tokens="64"), "max_tokens"),
    (req(max_tokens=64.0), "max_tokens"),
    (req(max_tokens=True), "max_tokens"),
    (req(max_tokens=0), "max_tokens"),
    (req(temperature="0.5"), "temperature"),
    (req(temperature=True), "temperature"),
    (req(temperature=NAN), "temperature"),
    (req(temperature=INF), "temperature"),
    (req(temperature=-INF), "temperature"),
    (req(temperature=-0.1), "temperature"),
    (req(top_p="high"), "top_p"),
    (req(top_p=NAN), "top_p"),
    (req(top_p=False), "top_p"),
    (req(stop=5), "stop"),
    (req(stop=["a", 1]), "stop[1]"),
    (req(tools="lookup"), "tools"),
    (req(tools={"type": "function"}), "tools"),
    (req(tools=["lookup"]), "tools[0]"),
    (req(tool_choice=1), "tool_choice"),
    (req(tool_choice="weird"), "tool_choice"),
    (req(tool_choice={"type": "function", "function": {}}), "tool_choice.function.name"),
    (req(tool_choice={"type": "function", "function": "f"}), "tool_choice.function"),
    (req(tools=[{"type": "function", "function": "lookup"}]), "tools[0].function"),
    (req(tools=[{"type": "function", "function": {"name": 5}}]), "tools[0].function.name"),
    (req(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
    (
        req(messages=[{"role": "assistant", "tool_calls": [{"id": 1, "function": {"name": "f"}}]}]),
        "messages[0].tool_calls[0].id",
    ),
    (req(response_format={"type": 5}), "response_format.type"),
    (req(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (req(response_format="json"), "response_format"),
    (req(metadata=["tier"]), "metadata"),
    (req(metadata="free"), "metadata"),
    (req(metadata={1: "free"}), "metadata"),
    (req(stream="yes"), "stream"),
    (req(stream=1), "stream"),
    (req(system=5), "system"),
    (req(system=["be brief"]), "system"),
]

# cache.responses and rate limits on: the cache policy and the token estimate read the request
# too (before RequestError they raised TypeError on some of the shapes above)
STATEFUL = {
    "version: 1\n": "version: 1\ncache: {responses: {ttl: 10m, max_temperature: 1}}\n",
    "key-a-123456,": "key-a-123456, limits: {rpm: 10000, tpm: 100000000},",
}


def stateful(base: str) -> str:
    for old, new in STATEFUL.items():
        assert old in base
        base = base.replace(old, new)
    return base


@pytest.mark.parametrize(("request_", "field"), BAD, ids=[f or "request" for _, f in BAD])
async def test_a_bad_request_is_refused_before_anything_is_sent(
    make: Make,
    fake: FakeServer,
    base: str,
    request_: Any,
    field: str,
) -> None:
    eng = make(stateful(base))
    with pytest.raises(RequestError) as info:
        await eng.route(request_)
    assert info.value.field == field
    assert str(info.value).startswith(f"bad request: {field}: " if field else "bad request: ")
    with pytest.raises(RequestError) as info:
        eng.stream(request_)  # at once, not at the first iteration
    assert info.value.field == field
    with pytest.raises(RequestError) as info:
        eng.plan(request_)
    assert info.value.field == field
    assert fake.stats(log=False)["requests"] == 0


def test_route_sync_raises_the_request_error(compile_yaml: Callable[..., Any], fake: FakeServer) -> None:
    with Engine.from_graph(compile_yaml()) as eng, pytest.raises(RequestError) as info:
        eng.route_sync(req(temperature=NAN))
    assert info.value.field == "temperature"
    assert fake.stats(log=False)["requests"] == 0


def test_the_message_names_the_field_and_what_is_wrong() -> None:
    with pytest.raises(RequestError) as info:
        normalize_request(req(messages=[user(), user(), {"role": "robot", "content": "x"}]))
    assert str(info.value) == (
        "bad request: messages[2].role: unknown role 'robot' (expected one "
        "of: system, user, assistant, tool, developer)"
    )
    assert info.value.reason.startswith("unknown role 'robot'")
    with pytest.raises(RequestError, match=r"at most 256 .*providers refuse longer model names"):
        normalize_request(req(model="m" * 257))
    with pytest.raises(RequestError, match=r"^bad request: temperature: .*finite.* nan$"):
        normalize_request(req(temperature=NAN))
    with pytest.raises(RequestError, match=r"^bad request: expected a dict .*got list$"):
        normalize_request([])  # type: ignore[arg-type]
    assert normalize_request(req(model="m" * 256))["model"] == "m" * 256


async def test_a_nan_temperature_never_reaches_the_wire(make: Make, fake: FakeServer) -> None:
    eng = make()
    for request in (
        req(temperature=NAN),
        Request(model="g", temperature=NAN),
        req(model="anth", temperature=NAN),
        req(top_p=NAN),
    ):
        with pytest.raises(RequestError):
            await eng.route(request)
    with pytest.raises(RequestError):
        eng.plan(Request(model="g", temperature=NAN))
    assert fake.requests == []


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Request(model="g", temperature=NAN), "temperature"),  # pydantic lets NaN through
        (lambda: Request(model="g", temperature=-1), "temperature"),
        (lambda: Request(model="g", max_tokens=0), "max_tokens"),
        (lambda: Request(model=""), "model"),
        (lambda: Request(model="m" * 300), "model"),
        (lambda: Request.model_construct(model=5, messages=[], metadata={}), "model"),
        (lambda: _assigned(temperature="hot"), "temperature"),
        (lambda: _assigned(metadata=["tier"]), "metadata"),
        (lambda: _assigned(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
        (lambda: _assigned(messages="hi"), "messages"),
        (lambda: _Unreadable(model="g"), ""),  # its own serializer fails inside model_dump
    ],
)
async def test_a_request_model_with_bad_values_raises_request_error(
    make: Make,
    fake: FakeServer,
    build: Callable[[], Request],
    field: str,
) -> None:
    request = build()
    with pytest.raises(RequestError) as info:  # never pydantic's ValidationError
        await make().route(request)
    assert info.value.field == field
    assert fake.requests == []


def _assigned(**fields: Any) -> Request:
    """A valid ``Request`` changed afterwards (pydantic does not check assignments)."""
    request = Request(model="g", messages=[Message(role="user", content="hi")])
    for name, value in fields.items():
        setattr(request, name, value)
    return request


class _Unreadable(Request):
    @field_serializer("metadata")
    def _broken(self, value: Any) -> Any:
        raise ValueError("the serializer is broken")


def test_good_requests_pass_with_their_values() -> None:
    class Role(str):
        pass

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    good: dict[str, Any] = {
        "model": "chat",
        "system": "be brief",
        "messages": (
            {"role": "developer", "content": "x"},
            Message(role="user", content="hi", name="ann"),
            {
                "role": Role("user"),
                "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "42", "tool_call_id": "c1", "cache_control": {}},
        ),
        "temperature": 0,
        "top_p": 0.5,
        "max_tokens": 1,
        "stop": "\n",
        "stream": False,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"x": 1},
        "response_format": {"type": "json_object"},
        "metadata": {"tier": "free"},
        "seed": 7,
        "top_k": 3,
        "user": None,
    }
    out = normalize_request(good)
    assert out["messages"][1] == {"role": "user", "content": "hi", "name": "ann"}
    assert out["messages"][3]["tool_calls"] == [call]
    expected = {
        **good,
        "messages": [
            dict(m) if isinstance(m, dict) else m.model_dump(exclude_none=True) for m in good["messages"]
        ],
    }
    assert out == expected
    assert normalize_request({"model": "g"}) == {"model": "g", "messages": [], "metadata": {}}
    assert normalize_request(req(temperature=None, metadata=None))["metadata"] == {}
    assert normalize_request(req(stop=["a", "b"], temperature=2.0))["stop"] == ["a", "b"]


def test_the_result_shares_no_container_a_caller_mutates() -> None:
    parts = [{"type": "text", "text": "a"}]
    calls = [{"id": "c", "function": {"name": "f"}}]
    caller = req(
        messages=[user(parts), {"role": "assistant", "tool_calls": calls}],
        metadata={"tier": "free"},
        stop=["x"],
        tools=[{"type": "function"}],
    )
    before = copy.deepcopy(caller)
    out = normalize_request(caller)
    assert out == {**before}
    assert out is not caller
    assert out["messages"] is not caller["messages"]
    assert out["messages"][0] is not caller["messages"][0]
    assert out["messages"][0]["content"] is not parts
    assert out["messages"][0]["content"][0] is not parts[0]
    assert out["messages"][1]["tool_calls"] is not calls
    for key in ("metadata", "stop", "tools"):
        assert out[key] is not caller[key], key
    assert caller == before


async def test_a_caller_changing_its_request_in_flight_does_not_change_what_is_sent(
    make: Make,
    fake: FakeServer,
    base: str,
) -> None:
    # a (openai) refuses with 401 (fail over, no retry): anth (anthropic) renders its own body
    # from the request after the caller changed every part of it
    eng = make(base.replace("targets: [a/m, b/m, c/m]", "targets: [a/m, anth/claude-3-5-haiku-latest]"))
    fake.program("/a/", ["401"])
    caller = req(
        messages=[user([{"type": "text", "text": "original"}])],
        max_tokens=20,
        system="be brief",
        stop=["STOP"],
        metadata={"tier": "free"},
    )

    def meddle(event: AttemptStarted) -> None:
        if event.target == "a/m":  # a's body is on its way; anth's is not rendered yet
            caller["messages"][0]["content"][0]["text"] = "changed"
            caller["messages"][0]["content"].append({"type": "text", "text": "more"})
            caller["messages"][0]["role"] = "assistant"
            caller["messages"].append(user("another"))
            caller["stop"].append("END")
            caller["metadata"]["tier"] = "paid"
            caller.update(max_tokens=1, system="be verbose")

    eng.on("attempt_start", meddle)
    resp = await eng.route(caller)
    assert resp.provider == "anth" and resp.text == "echo: original"
    sent_a, sent_anth = (r["body"] for r in fake.requests)
    assert sent_a["messages"][1] == user([{"type": "text", "text": "original"}])
    assert sent_anth["messages"] == [user([{"type": "text", "text": "original"}])]
    assert (sent_anth["max_tokens"], sent_anth["system"], sent_anth["stop_sequences"]) == (
        20,
        "be brief",
        ["STOP"],
    )


async def test_a_stream_sends_the_request_as_it_was_when_stream_was_called(
    make: Make,
    fake: FakeServer,
) -> None:
    caller = req(model="gem", messages=[user("original")])
    stream = make().stream(caller)
    caller["messages"][0]["content"] = "changed"
    caller["messages"].append(user("another"))
    text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
    assert text == "echo: original"
    assert [c["parts"] for c in fake.requests[0]["body"]["contents"]] == [[{"text": "original"}]]


async def test_routing_never_changes_the_callers_request(make: Make, fake: FakeServer, base: str) -> None:
    eng = make(
        base.replace(
            "targets: [a/m, b/m, c/m]",
            "targets: [a/m, anth/claude-3-5-haiku-latest, gem/gemini-1.5-flash, oll/llama3.2]",
        )
    )
    for prefix in ("/a/", "/anth/", "/gem/"):
        fake.program(prefix, ["401", "401"])
    caller = req(
        messages=[
            user([{"type": "text", "text": "hi"}]),
            {"role": "assistant", "content": "ok"},
            user("and?"),
        ],
        system="s",
        stream=False,
        stop="x",
        temperature=0.1,
        tools=[{"type": "function", "function": {"name": "f"}}],
        stream_options={"include_usage": False},
    )
    before = copy.deepcopy(caller)
    assert (await eng.route(caller)).provider == "oll"
    assert [e async for e in eng.stream(caller)]
    eng.plan(caller)
    assert caller == before
    assert len(fake.requests) == 8  # four kinds rendered it, twice


def test_request_error_pickles_and_round_trips() -> None:
    err = RequestError("messages[2].role", "unknown role 'robot'")
    err.add_note("from a worker")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RequestError
    assert (back.field, back.reason, str(back), back.args) == (err.field, err.reason, str(err), err.args)
    assert back.__notes__ == ["from a worker"]
    assert isinstance(back, EngineError) and isinstance(back, ValueError)
    whole = pickle.loads(pickle.dumps(RequestError("", "expected a dict")))
    assert str(whole) == "bad request: expected a dict" and whole.field == ""
    assert copy.copy(err).field == err.field
