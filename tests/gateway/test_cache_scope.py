"""The response cache behind the gateway is per client key: an answer cached for one key (or an
identical request of another key in flight) never answers another key's request."""

from __future__ import annotations

import asyncio

import openai
from gwserve import Served

from engine.fake import FakeServer

KEYS = {"A_KEY": "sk-tenant-a-0123456789", "B_KEY": "sk-tenant-b-0123456789"}
CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 3s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
providers:
  a: {kind: openai, base_url: "{fake}/scope/v1", api_key: key-a-123456, models: {m: {}}}
cache:
  responses: {ttl: 10m, max_temperature: 0.1}
routes:
  - {match: {model: chat}, to: a/m}
server:
  keys:
    tenant-a: {key: "${A_KEY}"}
    tenant-b: {key: "${B_KEY}"}
"""


def ask(gateway: Served, key: str, text: str) -> tuple[str, str | None]:
    """The answer's text and its ``x-engine-cache`` header."""
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="chat", temperature=0, messages=[{"role": "user", "content": text}]
        )
    return raw.parse().choices[0].message.content or "", raw.headers.get("x-engine-cache")


def test_an_answer_cached_for_one_key_is_not_another_keys(gateway: Served) -> None:
    a, b = KEYS["A_KEY"], KEYS["B_KEY"]
    first = ask(gateway, a, "what is the capital of France?")
    assert first[1] == "miss"
    assert ask(gateway, a, "what is the capital of France?") == (first[0], "hit")
    assert ask(gateway, b, "what is the capital of France?")[1] == "miss"  # its own, from upstream
    assert ask(gateway, b, "what is the capital of France?")[1] == "hit"


def test_identical_requests_of_two_keys_in_flight_are_not_shared(
    gateway: Served, fake_server: FakeServer
) -> None:
    """Two keys asking at once both go upstream (two requests of one key share one flight)."""
    fake_server.program("/scope", ["latency=200ms"] * 4)

    async def asked(*keys: str) -> int:
        before = sum(r["path"].startswith("/scope") for r in fake_server.requests)

        async def one(key: str) -> None:
            async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
                await client.chat.completions.create(
                    model="chat", temperature=0, messages=[{"role": "user", "content": f"at once {keys}"}]
                )

        await asyncio.gather(*(one(k) for k in keys))
        return sum(r["path"].startswith("/scope") for r in fake_server.requests) - before

    assert asyncio.run(asked(KEYS["A_KEY"], KEYS["A_KEY"])) == 1  # one key: one flight
    assert asyncio.run(asked(KEYS["A_KEY"], KEYS["B_KEY"])) == 2
