"""The transport: what goes on the wire (headers, body, secrets), which error kind each failure below
HTTP becomes, with the aiohttp and httpx-aiohttp transports, and a caller-supplied transport."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from engine.api import Engine
from engine.errors import AllTargetsFailed, ProviderError
from engine.fake import FakeServer, refused_port

ONE = """\
version: 1
defaults: {speed: tight, retry: never, breaker: none, deadline: 5s}
speeds:
  tight: {connect: 300ms, read: 300ms, pool: 300ms, retries: 0, backoff: {base: 10ms}}
providers:
  a: {kind: openai, base_url: "BASE_URL", api_key: "${KEY_A}", models: {m: {}},
      headers: {X-Team: blue, X-Empty: "${UNSET:-}"}}
routes:
  - match: {}
    to: a/m
"""

OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def one(url: str) -> str:
    return ONE.replace("BASE_URL", url)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
@pytest.mark.parametrize(
    ("directive", "kind"),
    [
        ("reset", "reset"),
        ("truncate", "reset"),
        ("latency=800ms", "timeout"),
        ("malformed", "protocol"),
    ],
)
async def test_failures_below_http_become_error_kinds(
    ask: Callable[..., Any],
    make: Callable[..., Engine],
    fake: FakeServer,
    transport: str,
    directive: str,
    kind: str,
) -> None:
    eng = make(one("{fake}/a/v1"), env={"KEY_A": "sk-secret-a"}, transport=transport)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("m", f"hi [[fake: {directive}]]"))
    (attempt,) = info.value.attempts
    assert attempt.outcome == "failover"
    assert attempt.error is not None and attempt.error.split(":")[0] == kind, attempt.error


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-aiohttp"])
async def test_refused_connection_is_a_connect_error(
    ask: Callable[..., Any],
    make: Callable[..., Engine],
    transport: str,
) -> None:
    eng = make(one(f"http://127.0.0.1:{refused_port()}/v1"), env={"KEY_A": "k"}, transport=transport)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("m"))
    assert [a.error.split(":")[0] for a in info.value.attempts if a.error] == ["connect"]


def capture(
    status: int = 200, body: Any = OK_BODY, headers: dict[str, str] | None = None, gzipped: bool = False
) -> tuple[list[httpx.Request], Callable[..., Any]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        content = json.dumps(body).encode()
        extra = dict(headers or {})
        if gzipped:
            content = gzip.compress(content)
            extra["content-encoding"] = "gzip"
        return httpx.Response(status, content=content, headers={"content-type": "application/json", **extra})

    return seen, lambda provider: httpx.MockTransport(handler)


async def test_a_caller_transport_sees_headers_revealed_once_and_a_sized_json_body(
    ask: Callable[..., Any],
    make: Callable[..., Engine],
) -> None:
    seen, factory = capture()
    eng = make(one("https://llm.example/v1"), env={"KEY_A": "sk-secret-a"}, transport=factory)
    resp = await eng.route(ask("m", "hello"))
    assert resp.text == "hi" and resp.usage.input_tokens == 3
    (req,) = seen
    assert str(req.url) == "https://llm.example/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-secret-a"
    assert req.headers["accept-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-team"] == "blue"
    assert "x-empty" not in req.headers  # an unset ${VAR:-} header is not sent
    assert req.headers["host"] == "llm.example"
    assert int(req.headers["content-length"]) == len(req.content)
    body = json.loads(req.content)
    assert body["model"] == "m" and body["messages"] == [{"role": "user", "content": "hello"}]


async def test_gzip_answers_are_decoded(ask: Callable[..., Any], make: Callable[..., Engine]) -> None:
    _, factory = capture(gzipped=True)
    eng = make(one("https://llm.example/v1"), env={"KEY_A": "k"}, transport=factory)
    assert (await eng.route(ask("m"))).text == "hi"


async def test_a_secret_echoed_by_the_provider_is_masked_everywhere(
    ask: Callable[..., Any],
    make: Callable[..., Engine],
) -> None:
    body = {"error": {"message": "Incorrect API key provided: sk-secret-a.", "type": "auth"}}
    _, factory = capture(400, body)
    eng = make(one("https://llm.example/v1"), env={"KEY_A": "sk-secret-a"}, transport=factory)
    with pytest.raises(ProviderError) as info:
        await eng.route(ask("m"))
    err = info.value
    assert err.status == 400
    texts = [
        str(err),
        repr(err),
        err.body,
        *map(str, err.attempts),
        *map(repr, err.attempts),
        repr(eng),
        repr(eng.graph),
        eng.plan(ask("m")).text(),
        json.dumps(eng.plan(ask("m")).to_dict()),
    ]
    assert all("sk-secret-a" not in t for t in texts)
    assert "***" in err.attempts[0].error  # type: ignore[operator]


async def test_connections_are_created_once_per_provider_and_reused(
    ask: Callable[..., Any],
    make: Callable[..., Engine],
    fake: FakeServer,
) -> None:
    eng = make()
    await eng.route(ask("g"))
    conn = next(c for c in eng._core.runtime.connections if c.name == "a")
    backend = conn._backend
    assert backend is not None
    for _ in range(5):
        await eng.route(ask("g"))
    assert conn._backend is backend
    assert [c.name for c in eng._core.runtime.connections if c._backend is not None] == ["a"]


async def test_the_httpx_aiohttp_transport_routes_and_streams_too(
    base: str,
    ask: Callable[..., Any],
    make: Callable[..., Engine],
    fake: FakeServer,
) -> None:
    eng = make(base, transport="httpx-aiohttp")
    resp = await eng.route(ask("anth"))
    assert resp.text == "echo: hello there" and resp.provider == "anth"
    events = [e async for e in eng.stream(ask("gem", "one two"))]
    assert "".join(getattr(e, "text", "") for e in events) == "echo: one two"


def test_an_unknown_transport_name_is_refused(compile_yaml: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        Engine.from_graph(compile_yaml(), transport="curl")


def test_the_removed_httpx_transport_says_why_and_what_to_use(
    compile_yaml: Callable[..., Any],
) -> None:
    with pytest.raises(ValueError, match="was removed") as info:
        Engine.from_graph(compile_yaml(), transport="httpx")
    message = str(info.value)
    assert "answer twice" in message and "'httpx-aiohttp'" in message and "default" in message


async def test_warmup_opens_a_connection_to_every_provider(
    make: Callable[..., Engine],
    fake: FakeServer,
) -> None:
    eng = make()
    result = await eng.warmup()
    assert result == {name: "200" for name in ("a", "anth", "b", "c", "gem", "oll")}
    assert all(c._backend is not None for c in eng._core.runtime.connections)
