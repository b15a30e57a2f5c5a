"""``Engine.list_models`` failures raise ``ListingError`` (a ``ProviderError``, as before): the
provider's name, the status when one came, and the GET as an attempt whose ``kind`` and ``detail``
say what went wrong, over loopback against the fake, a closed port and raw upstreams."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import socket
from collections.abc import Awaitable, Callable

import pytest
from rawhttp import Handler, read_request, reply

import engine
from engine.api import Engine
from engine.errors import ListingError, ProviderError
from engine.fake import FakeServer

Make = Callable[..., Engine]
Raw = Callable[[Handler], Awaitable[str]]

CONFIG = """\
version: 1
defaults: {speed: test, retry: transient, breaker: none, deadline: 5s}
speeds:
  test: {connect: 300ms, read: 300ms, pool: 300ms, retries: 0, backoff: {base: 10ms}}
providers:
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-secret-9, models: {m: {}}}
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  down: {kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: kd, models: {m: {}}}
routes:
  - {match: {}, to: b/m}
"""


def answering(body: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(body)
            await writer.drain()

    return handler


@pytest.fixture
async def config(raw: Raw) -> Callable[[bytes], Awaitable[str]]:
    async def config_(answer: bytes = reply(b'{"data": []}')) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = await raw(answering(answer))
        return CONFIG.replace("{raw}", url).replace("{port}", str(port))

    return config_


async def failure(eng: Engine, provider: str) -> ListingError:
    with pytest.raises(ListingError) as info:
        await eng.list_models(provider, refresh=True)
    err = info.value
    assert isinstance(err, ProviderError) and err.provider == provider
    [attempt] = err.attempts
    assert (attempt.target, attempt.outcome, attempt.status) == (provider, "fatal", err.status)
    assert err.__notes__ == [f"  - {attempt}"]
    return err


async def test_an_error_status_is_kind_status_with_the_provider_and_its_status(
    make: Make,
    fake: FakeServer,
    config: Callable[[], Awaitable[str]],
) -> None:
    eng = make(await config())
    fake.program("/b/", ["401"])
    err = await failure(eng, "b")
    attempt = err.attempts[0]
    assert err.status == attempt.status == 401 and attempt.kind == "status"
    assert str(err).startswith("b: model listing answered HTTP 401: ")
    assert attempt.detail == err.body and attempt.error == f"status: {err.body}"
    assert "key-b-secret-9" not in f"{err!r} {err.body} {attempt!r}"
    for again in (pickle.loads(pickle.dumps(err)), copy.deepcopy(err)):
        assert type(again) is ListingError and vars(again) == vars(err)


async def test_a_refused_connection_and_a_timeout_are_their_kinds(
    make: Make,
    fake: FakeServer,
    config: Callable[[], Awaitable[str]],
) -> None:
    eng = make(await config())
    down = (await failure(eng, "down")).attempts[0]
    assert (down.kind, down.status) == ("connect", None) and down.detail
    fake.program("/b/", ["latency=2s"])
    err = await failure(eng, "b")
    assert err.attempts[0].kind == "timeout" and err.status is None
    assert err.attempts[0].detail and "timed out" not in err.attempts[0].detail
    assert 0.25 < err.attempts[0].latency < 1.5  # the read timeout, 300ms


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json at all", "not JSON"),
        (json.dumps({"data": 5}).encode(), "could not be read"),
    ],
)
async def test_an_unreadable_listing_is_protocol(
    make: Make,
    config: Callable[[bytes], Awaitable[str]],
    body: bytes,
    says: str,
) -> None:
    eng = make(await config(reply(body)))
    err = await failure(eng, "up")
    assert err.attempts[0].kind == "protocol" and says in str(err)


async def test_many_listings_map_each_failure_to_its_listing_error(
    make: Make,
    fake: FakeServer,
    config: Callable[[], Awaitable[str]],
) -> None:
    eng = make(await config())
    fake.program("/b/", ["503"])
    out = await eng.list_models_many()
    assert [n for n, r in out.items() if not isinstance(r, ListingError)] == ["up"]
    assert {n: r.attempts[0].kind for n, r in out.items() if isinstance(r, ListingError)} == {
        "b": "status",
        "down": "connect",
    }


def test_listing_error_is_exported_and_a_provider_error() -> None:
    assert engine.ListingError is ListingError
    assert issubclass(ListingError, engine.ProviderError)
