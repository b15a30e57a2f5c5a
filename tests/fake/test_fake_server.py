"""Faults over real HTTP (status, Retry-After, latency, reset, truncate, malformed, die_after,
stream errors), programs (queue, seeded rate, scopes, admin API), stats and the request log."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from engine.fake import FakeServer

KINDS = ["openai", "anthropic", "gemini", "ollama"]


@pytest.mark.parametrize("kind", KINDS)
async def test_status_with_retry_after_in_each_kinds_error_shape(call: Any, kind: str) -> None:
    r = await call(kind, headers={"x-fake": "status=429 retry_after=2 retry_after_ms=150"})
    assert r.status_code == 429
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("2", "150")
    err = r.json()
    shape = {
        "openai": lambda e: set(e["error"]) == {"message", "type", "param", "code"},
        "anthropic": lambda e: e["type"] == "error" and e["error"]["type"] == "rate_limit_error",
        "gemini": lambda e: e["error"]["status"] == "RESOURCE_EXHAUSTED",
        "ollama": lambda e: isinstance(e["error"], str),
    }
    assert shape[kind](err)


async def test_directives_in_the_last_user_message(call: Any) -> None:
    r = await call("anthropic", "hello [[fake: status=503]]")
    assert r.status_code == 503 and r.json()["error"]["type"] == "api_error"
    d = (await call("openai", "hello [[fake: tool=lookup]] world")).json()
    assert d["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert json.loads(d["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "q": "hello  world"
    }


async def test_bad_directive_is_a_400(call: Any) -> None:
    r = await call("openai", headers={"x-fake": "explode"})
    assert r.status_code == 400 and "unknown fake directive" in r.json()["error"]["message"]


async def test_latency_delays_the_headers(call: Any) -> None:
    t = time.perf_counter()
    assert (await call("openai", headers={"x-fake": "latency=200ms"})).status_code == 200
    assert time.perf_counter() - t >= 0.19


async def test_latency_beyond_the_client_timeout(fake: FakeServer, body_for: Any) -> None:
    async with httpx.AsyncClient(timeout=0.1) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(
                fake.base_url("openai") + "/chat/completions",
                json=body_for("openai", "hi"),
                headers={"Authorization": "Bearer k", "x-fake": "latency=1s"},
            )


@pytest.mark.parametrize("kind", KINDS)
async def test_reset_closes_without_a_response(call: Any, kind: str) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await call(kind, headers={"x-fake": "reset"})


async def test_truncate_json_body(call: Any) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await call("openai", headers={"x-fake": "truncate"})


async def test_truncate_stream(call: Any) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await call("anthropic", "a b c d", stream=True, headers={"x-fake": "truncate"})


async def test_malformed_json_body(call: Any) -> None:
    r = await call("gemini", headers={"x-fake": "malformed"})
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


async def test_malformed_stream_event(call: Any, parse_sse: Any) -> None:
    r = await call("openai", "a b", stream=True, headers={"x-fake": "malformed"})
    bad = []
    for _, data in parse_sse(r.text):
        try:
            json.loads(data) if data != "[DONE]" else None
        except json.JSONDecodeError:
            bad.append(data)
    assert len(bad) == 1 and r.text.rstrip().endswith("[DONE]")


@pytest.mark.parametrize("kind", KINDS)
async def test_die_after_drops_the_stream_with_no_terminator(
    fake: FakeServer, client: httpx.AsyncClient, body_for: Any, url_for: Any, auth: Any, kind: str
) -> None:
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST",
            url_for(kind, stream=True),
            json=body_for(kind, "a b c d e f", stream=True),
            headers={**auth[kind], "x-fake": "die_after=2"},
        ) as r:
            async for line in r.aiter_lines():
                received.append(line)
    text = "\n".join(received)
    assert "[DONE]" not in text and "message_stop" not in text and '"done":true' not in text
    assert fake.requests[-1]["status"] == "dropped"


async def test_stream_error_event(call: Any, parse_sse: Any) -> None:
    events = parse_sse(
        (await call("anthropic", "a b c", stream=True, headers={"x-fake": "stream_error"})).text
    )
    name, data = events[-1]
    assert name == "error"
    assert json.loads(data)["error"]["type"] == "overloaded_error"


async def test_chunk_delay_and_chunks(
    fake: FakeServer, client: httpx.AsyncClient, body_for: Any, parse_sse_json: Any
) -> None:
    url = fake.base_url("openai") + "/chat/completions"
    t = time.perf_counter()
    r = await client.post(
        url,
        json=body_for("openai", "a b c d e f g h", stream=True),
        headers={"Authorization": "Bearer k", "x-fake": "chunks=5 chunk_delay=20ms"},
    )
    assert time.perf_counter() - t >= 0.1  # 7 events, 6 gaps of 20 ms
    chunks = parse_sse_json(r.text)
    assert len(chunks) == 1 + 5 + 1


# -- programs ----------------------------------------------------------------------------------
async def test_queue_program(fake: FakeServer, call: Any) -> None:
    fake.program(faults=["503", "503", "ok"])
    codes = [(await call("openai")).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]


async def test_program_scoped_to_a_kind_and_a_model(fake: FakeServer, call: Any) -> None:
    fake.program("anthropic", ["529"])
    fake.program("openai", ["500"], model="gpt-a")
    assert (await call("openai", model="gpt-b")).status_code == 200
    assert (await call("openai", model="gpt-a")).status_code == 500
    assert (await call("anthropic")).status_code == 529
    assert (await call("anthropic")).status_code == 200


async def test_program_scoped_to_a_path_prefix(fake: FakeServer, call: Any) -> None:
    fake.program("/east", ["502"])
    assert (await call("openai", prefix="west")).status_code == 200
    assert (await call("openai", prefix="east")).status_code == 502


async def test_seeded_rate_program_is_reproducible(fake: FakeServer, call: Any) -> None:
    async def run() -> list[int]:
        fake.reset()
        fake.program(faults=["503", "429"], rate=0.3, seed=7)
        return [(await call("ollama", stream=False)).status_code for _ in range(30)]

    first = await run()
    assert first == await run()
    assert 0 < sum(c != 200 for c in first) < 30


async def test_header_directives_override_the_program(fake: FakeServer, call: Any) -> None:
    fake.program(faults=["503"])
    assert (await call("openai", headers={"x-fake": "status=200"})).status_code == 200


async def test_admin_api(fake: FakeServer, client: httpx.AsyncClient, call: Any) -> None:
    r = await client.post(fake.url + "/_fake/program", json={"scope": "gemini", "faults": ["429", "ok"]})
    assert r.json() == {"ok": True}
    assert (await call("gemini")).status_code == 429
    assert (await call("gemini")).status_code == 200
    stats = (await client.get(fake.url + "/_fake/stats")).json()
    assert stats["requests"] == 2 and stats["statuses"] == {"429": 1, "200": 1}
    assert (await client.post(fake.url + "/_fake/program", json={"faults": ["wat"]})).status_code == 400
    await client.post(fake.url + "/_fake/program", json=["500"])
    await client.post(fake.url + "/_fake/reset")
    assert (await call("gemini")).status_code == 200
    assert (await client.get(fake.url + "/_fake/stats?log=0")).json() == {
        "requests": 1,
        "paths": {"/v1beta/models/gemini-1.5-flash:generateContent": 1},
        "kinds": {"gemini": 1},
        "models": {"gemini-1.5-flash": 1},
        "statuses": {"200": 1},
    }


async def test_stats_and_log_redact_headers(fake: FakeServer, call: Any) -> None:
    await call("openai", headers={"Authorization": "Bearer sk-secret-123"})
    await call("anthropic", stream=True)
    stats = fake.stats()
    assert stats["paths"] == {"/v1/chat/completions": 1, "/v1/messages": 1}
    assert stats["models"] == {"gpt-4o-mini": 1, "claude-3-5-haiku-latest": 1}
    first, second = stats["log"]
    assert "authorization" in first["headers"]
    assert "sk-secret-123" not in json.dumps(stats)
    assert first["body"]["messages"][0]["content"] == "hello world"
    assert (second["kind"], second["stream"], second["status"]) == ("anthropic", True, 200)


async def test_unknown_path_is_404(fake: FakeServer, client: httpx.AsyncClient) -> None:
    assert (await client.get(fake.url + "/nope")).status_code == 404
    assert (await client.post(fake.url + "/_fake/nope")).status_code == 404


def test_base_urls() -> None:
    srv = FakeServer(port=1234)
    assert srv.base_url("openai") == "http://127.0.0.1:1234/v1"
    assert srv.base_url("anthropic", "p2") == "http://127.0.0.1:1234/p2/v1"
    assert srv.base_url("gemini") == srv.base_url("ollama") == "http://127.0.0.1:1234"
    with pytest.raises(ValueError):
        srv.base_url("cohere")


async def test_a_client_that_leaves_mid_stream_is_noted_not_logged(
    fake: FakeServer, client: httpx.AsyncClient, body_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = fake.base_url("openai") + "/chat/completions"
    async with client.stream(
        "POST",
        url,
        json=body_for("openai", "a b c d e f", stream=True),
        headers={"Authorization": "Bearer k", "x-fake": "chunk_delay=30ms"},
    ) as r:
        async for _ in r.aiter_lines():
            break  # a hedge loser: gone after the first event
    for _ in range(50):
        if fake.requests[-1]["status"] is not None:
            break
        await asyncio.sleep(0.02)
    assert fake.requests[-1]["status"] == "client_closed"
    assert "Error handling request" not in caplog.text


async def test_a_request_still_running_at_a_reset_is_not_counted_after_it(
    fake: FakeServer, call: Any
) -> None:
    slow = asyncio.ensure_future(call("openai", headers={"x-fake": "latency=300ms"}))
    while not fake.requests:  # the slow request has arrived
        await asyncio.sleep(0.01)
    fake.reset()
    assert (await slow).status_code == 200
    assert fake.stats(log=False)["statuses"] == {} and fake.stats(log=False)["requests"] == 0
