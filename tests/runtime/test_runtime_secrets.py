"""No secret reaches an error, an attempt, an event or a listing error — also when it is part of a
longer configured string (``Bearer ${KEY}``, ``key=${KEY}``, a path segment of ``base_url``) and an
upstream echoes it back, and also when the echo sits right at the place error text is cut."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import AllTargetsFailed, ProviderError
from engine.values import MASK, Scrubber, Secret

KEY1 = "sk-proj-Q7ZLEAKone0123456789abcdefABCDEF"
KEY2 = "tok-Q7ZLEAKtwo0123456789"
SEG = "Q7ZLEAKseg0123456789"
LEAKS = ("Q7ZLEAK", KEY1[:4], KEY2[:4])


def _echo_app(pad: int) -> web.Application:
    """An upstream that quotes what it was sent: the Authorization and X-Api headers and the
    request path, ``pad`` characters into its message (401; 400 when the body asks for it)."""

    async def answer(request: web.Request) -> web.Response:
        body = await request.text() if request.can_read_body else ""
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        said = f"Incorrect API key provided: {auth} {request.headers.get('X-Api', '')} for {request.path}"
        message = "x" * pad + said
        status = 400 if "make-400" in body else 401
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error"}}, status=status
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


CONFIG = """\
version: 1
defaults: {speed: t, retry: transient, breaker: none, deadline: 5s}
speeds:
  t: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
providers:
  bearer: {kind: openai, base_url: "{echo}/v1", headers: {Authorization: "Bearer ${KEY1}"},
           models: {m: {}}}
  inline: {kind: openai, base_url: "{echo}/v1", api_key: plain, headers: {X-Api: "key=${KEY2}"},
           models: {m: {}}}
  path: {kind: openai, base_url: "{echo}/${SEG}/v1", api_key: plain, models: {m: {}}}
groups:
  all: {strategy: priority, targets: [bearer/m, inline/m, path/m]}
routes:
  - {match: {model: all}, to: all}
  - {match: {}, to: bearer/m}
"""


@pytest.fixture(params=[0, 250 - 62, 300 - 62 - 2])  # the key well inside, and right at the cut
async def echo(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    runner = web.AppRunner(_echo_app(request.param))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def eng(echo: str) -> AsyncIterator[Engine]:
    graph = compile_text(CONFIG.replace("{echo}", echo), env={"KEY1": KEY1, "KEY2": KEY2, "SEG": SEG})
    async with Engine.from_graph(graph) as engine:
        yield engine


def _clean(*texts: Any) -> None:
    for text in texts:
        for leak in LEAKS:
            assert leak not in str(text), text


def _ask(model: str, text: str = "hi") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def test_an_echoed_secret_never_reaches_errors_attempts_or_events(eng: Engine) -> None:
    events: list[Any] = []
    for name in ("attempt_end", "failover", "retry"):
        eng.on(name, events.append)
    with pytest.raises(AllTargetsFailed) as caught:
        await eng.route(_ask("all"))
    err = caught.value
    assert [a.status for a in err.attempts] == [401, 401, 401]
    assert all("Incorrect API key provided" in (a.error or "") for a in err.attempts)
    assert all(MASK in (a.error or "") or len(a.error or "") >= 300 for a in err.attempts)
    _clean(err, repr(err), err.attempts, *(a.error for a in err.attempts))
    assert len(events) >= 6
    _clean(*(repr(e) for e in events))


async def test_an_echoed_secret_never_reaches_a_provider_error(eng: Engine) -> None:
    with pytest.raises(ProviderError) as caught:
        await eng.route(_ask("bearer", "make-400"))
    assert caught.value.status == 400
    _clean(caught.value, caught.value.body, caught.value.attempts)


async def test_an_echoed_secret_never_reaches_a_stream_error(eng: Engine) -> None:
    with pytest.raises(AllTargetsFailed) as caught:
        async for _ in eng.stream(_ask("all")):
            pass
    assert len(caught.value.attempts) == 3
    _clean(caught.value, caught.value.attempts)


async def test_an_echoed_secret_never_reaches_a_listing_error(eng: Engine) -> None:
    for name in ("bearer", "inline", "path"):
        with pytest.raises(ProviderError) as caught:
            await eng.list_models(name)
        assert caught.value.status == 401
        _clean(caught.value, caught.value.body, caught.value.attempts)
    many = await eng.list_models_many()
    assert all(isinstance(v, ProviderError) for v in many.values())
    _clean(*many.values())


def test_the_scrubber_masks_before_it_cuts() -> None:
    key = "sk-abcdefghijklmnop"
    scrub = Scrubber.of([Secret(f"Bearer {key}", (key,))])
    text = "x" * 295 + key
    assert scrub.scrub(text) == "x" * 295 + MASK[:5]
    assert key[:4] not in scrub.scrub(text)
    assert scrub.scrub(f"Bearer {key} and {key}", limit=None) == f"{MASK} and {MASK}"


def test_the_scrubber_masks_the_pieces_of_a_secret_url() -> None:
    url = "redis://user:pa%24%24word@cache.internal:6380/0"
    scrub = Scrubber.of([Secret(url)])
    said = "Error 111 connecting to cache.internal:6380. pa$$word pa%24%24word user"
    shown = scrub.scrub(said, limit=None)
    assert "cache.internal" not in shown and "pa$$word" not in shown
    assert "pa%24%24word" not in shown and shown.count(MASK) == 4
    assert Secret("redis://h:6379/0?password=sekrit", ("sekrit",)).masked() == "redis://h:6379/0?password=***"


def test_short_environment_values_are_not_masked_inside_other_text() -> None:
    scrub = Scrubber.of([Secret("us", ("us",))])
    assert scrub.scrub("status: unauthorized, try us-east") == "status: unauthorized, try us-east"


def test_json_error_bodies_are_cut_after_masking() -> None:
    # a body whose message is long: the whole message is kept until masked, then cut to 300
    from engine.providers import get_kind
    from engine.runtime.backends import error_detail

    body = json.dumps({"error": {"message": "y" * 400 + KEY1}}).encode()
    detail = error_detail(body, get_kind("openai"))
    assert KEY1 in detail  # unmasked: the caller masks it, then cuts
    assert Scrubber.of([Secret(KEY1)]).scrub(detail).count("y") == 300
