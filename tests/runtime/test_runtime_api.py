"""The Engine facade: from_file with profiles, reload while requests are in flight, route_sync, the
request forms, cost, health, event hooks, and secrets kept out of everything printable."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rawhttp import Handler, read_request

import engine.api as api
from engine.api import Engine
from engine.errors import AllTargetsFailed, ConfigError, NoRouteError
from engine.fake import FakeServer, refused_port
from engine.request import Request
from engine.result import TextDelta
from engine.runtime.backends import AiohttpBackend

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]
Raw = Callable[[Handler], Awaitable[str]]

ROUTES = """\
version: 1
defaults: {speed: test, breaker: none, deadline: 2s}
speeds:
  test: {connect: 300ms, read: 1s, pool: 300ms, retries: 1, backoff: {base: 10ms}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: ka, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
routes:
  - {match: {}, to: a/m}
"""


def write(tmp_path: Path, fake: FakeServer, text: str, **profiles: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text.replace("{fake}", fake.url))
    if profiles:
        (tmp_path / "profiles").mkdir(exist_ok=True)
        for name, body in profiles.items():
            (tmp_path / "profiles" / f"{name}.yaml").write_text(body.replace("{fake}", fake.url))
    return path


async def test_from_file_with_a_profile(
    tmp_path: Path, fake: FakeServer, ask: Ask, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, fake, ROUTES, other="routes:\n  - {match: {}, to: b/m}\n")
    async with Engine.from_file(path) as eng:
        assert (await eng.route(ask("x"))).provider == "a"
    async with Engine.from_file(path, profile="other") as eng:
        assert (await eng.route(ask("x"))).provider == "b"
    monkeypatch.setenv("ENGINE_PROFILE", "other")
    async with Engine.from_file(path) as eng:
        assert (await eng.route(ask("x"))).provider == "b"


async def test_reload_swaps_the_graph_while_requests_in_flight_finish_on_theirs(
    tmp_path: Path,
    fake: FakeServer,
    ask: Ask,
) -> None:
    path = write(tmp_path, fake, ROUTES)
    async with Engine.from_file(path) as eng:
        await eng.route(ask("x"))
        old_a = next(c for c in eng._core.runtime.connections if c.name == "a")
        old_b = next(c for c in eng._core.runtime.connections if c.name == "b")
        fake.program("/a/", ["latency=300ms"])
        in_flight = asyncio.ensure_future(eng.route(ask("x")))
        await asyncio.sleep(0.05)
        path.write_text(
            ROUTES.replace("{fake}", fake.url)
            .replace("to: a/m", "to: b/m")
            .replace("api_key: ka", "api_key: ka2")
        )
        graph = eng.reload()
        assert eng.graph is graph
        assert (await eng.route(ask("x"))).provider == "b"  # new requests: the new graph
        assert old_a._backend is not None  # still serving the request in flight
        resp = await in_flight
        assert resp.provider == "a"  # finished on the graph it started with
        await asyncio.sleep(0)  # the retired connection closes in the background
        assert old_a._backend is None and old_a not in eng._core.runtime.connections
        assert old_b in eng._core.runtime.connections  # unchanged provider: connection kept


async def test_a_broken_reload_keeps_the_current_graph(tmp_path: Path, fake: FakeServer, ask: Ask) -> None:
    path = write(tmp_path, fake, ROUTES)
    async with Engine.from_file(path) as eng:
        before = eng.graph
        path.write_text(ROUTES.replace("{fake}", fake.url).replace("to: a/m", "to: nope/m"))
        with pytest.raises(ConfigError):
            eng.reload()
        assert eng.graph is before
        assert (await eng.route(ask("x"))).provider == "a"


@pytest.mark.parametrize(
    "deep",
    [
        "routes: " + "[" * 40_000 + "]" * 40_000 + "\n",
        "routes: " + "{a: " * 40_000 + "1" + "}" * 40_000 + "\n",
        "routes:\n  " + "- " * 40_000 + "to: a/m\n",
    ],
    ids=["flow sequence", "flow mapping", "block sequence"],
)
async def test_a_reload_of_a_config_nested_40000_deep_keeps_the_current_graph(
    deep: str, tmp_path: Path, fake: FakeServer, ask: Ask
) -> None:
    # it used to kill the process: ruamel's C composer overflowed the C stack
    path = write(tmp_path, fake, ROUTES)
    async with Engine.from_file(path) as eng:
        before = eng.graph
        path.write_text("version: 1\n" + deep)
        with pytest.raises(ConfigError) as info:
            eng.reload()
        (problem,) = info.value.problems
        assert problem.line in (2, 3) and "nests more than 50 levels deep" in problem.message
        assert eng.graph is before
        assert (await eng.route(ask("x"))).provider == "a"


async def test_areload_compiles_off_the_loop_while_requests_are_answered(
    tmp_path: Path, fake: FakeServer, ask: Ask, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, fake, ROUTES)
    compiling, answered, released = threading.Event(), threading.Event(), []
    real = api.compile_file

    def slow_compile(*args: Any, **kwargs: Any) -> Any:
        compiling.set()
        # held until the loop has answered requests meanwhile; compiled on the loop thread, it
        # would wait the whole 30 s in vain (nothing could be answered) and the test fail
        released.append(answered.wait(30))
        return real(*args, **kwargs)

    async with Engine.from_file(path) as eng:
        monkeypatch.setattr(api, "compile_file", slow_compile)
        path.write_text(ROUTES.replace("{fake}", fake.url).replace("to: a/m", "to: b/m"))
        reload = asyncio.ensure_future(eng.areload())
        while not compiling.is_set():
            await asyncio.sleep(0.001)
        providers = [(await eng.route(ask("x"))).provider for _ in range(3)]  # meanwhile
        answered.set()
        graph = await reload
        assert released == [True] and providers == ["a", "a", "a"]
        assert eng.graph is graph and (await eng.route(ask("x"))).provider == "b"


async def test_a_failing_areload_raises_and_keeps_the_current_graph(
    tmp_path: Path, fake: FakeServer, ask: Ask
) -> None:
    path = write(tmp_path, fake, ROUTES)
    async with Engine.from_file(path) as eng:
        before = eng.graph
        path.write_text(ROUTES.replace("{fake}", fake.url).replace("to: a/m", "to: nope/m"))
        with pytest.raises(ConfigError, match="nope"):
            await eng.areload()
        assert eng.graph is before
        assert (await eng.route(ask("x"))).provider == "a"
        graph = await eng.areload(graph=before)  # a graph given: nothing to compile
        assert graph is before and eng.graph is before


async def test_reload_needs_a_source(make: Make) -> None:
    eng = make()
    with pytest.raises(ValueError, match="path= or graph="):
        eng.reload()
    assert eng.reload(graph=eng.graph) is eng.graph


def test_route_sync_for_scripts(tmp_path: Path, fake: FakeServer) -> None:
    path = write(tmp_path, fake, ROUTES)
    with Engine.from_file(path) as eng:
        resp = eng.route_sync({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.text == "echo: hi"
        assert (
            eng.route_sync(Request(model="x", messages=[{"role": "user", "content": "yo"}])).text
            == "echo: yo"
        )  # type: ignore[list-item]


def test_a_route_sync_one_liner_leaks_nothing_at_exit(tmp_path: Path, fake: FakeServer) -> None:
    import subprocess
    import sys

    write(tmp_path, fake, ROUTES)
    script = (
        "from engine import Engine\n"
        "r = Engine.from_file('routes.yaml').route_sync("
        "{'model': 'g', 'messages': [{'role': 'user', 'content': 'hi'}]})\n"
        "print(r.text)\n"
    )
    repo = str(Path(__file__).resolve().parents[2])  # this checkout's engine, not an installed one
    env = {**os.environ, "PYTHONPATH": repo}
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "echo: hi\n"
    # -X dev also reports callbacks slower than 0.1 s: a loaded machine's, not a leak
    stderr = [
        line
        for line in out.stderr.splitlines()
        if not re.fullmatch(r"Executing <.*> took [\d.]+ seconds", line)
    ]
    assert stderr == [], out.stderr


async def test_route_sync_refuses_to_run_inside_a_loop(make: Make, ask: Ask) -> None:
    with pytest.raises(RuntimeError, match="await route"):
        make().route_sync(ask())


async def test_requests_as_dicts_or_models(make: Make, fake: FakeServer) -> None:
    eng = make()
    req = Request(
        model="g",
        system="be brief",
        messages=[{"role": "user", "content": "hi"}],  # type: ignore[list-item]
        temperature=0.2,
        max_tokens=20,
        stop=["x"],
        metadata={"tier": "free"},
    )
    resp = await eng.route(req)
    assert resp.text == "echo: hi"
    sent = fake.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0.2


async def test_the_response_carries_usage_cost_and_latency(make: Make, fake: FakeServer, ask: Ask) -> None:
    resp = await make().route(ask("g"))
    assert (resp.provider, resp.model, resp.finish_reason, resp.cached) == ("a", "m", "stop", False)
    assert resp.cost == pytest.approx((resp.usage.input_tokens * 1.0 + resp.usage.output_tokens * 2.0) / 1e6)
    assert 0 < resp.attempts[0].latency <= resp.latency
    assert resp.raw["object"] == "chat.completion"
    assert (await make().route(ask("gem"))).cost is None  # no price in the config


async def test_no_route(make: Make, compile_yaml: Callable[..., Any], ask: Ask) -> None:
    text = ROUTES.replace("match: {}", "match: {model: only}")
    with pytest.raises(NoRouteError):
        await make(text).route(ask("other"))


async def test_health_reports_latency_and_counts(make: Make, fake: FakeServer, ask: Ask) -> None:
    eng = make()
    fake.program("/a/", ["503"])
    for _ in range(3):
        await eng.route(ask("g"))
    health = eng.health()
    assert set(health) == {"a", "anth", "b", "c", "gem", "oll"}
    a = health["a"]
    assert (a.tries, a.failures, a.circuit) == (4, 1, "none")
    assert a.latency is not None and 0 < a.latency < 0.5
    assert health["b"].latency is None and health["b"].tries == 0


async def test_event_hooks_report_attempts_retries_and_failovers(
    make: Make, fake: FakeServer, ask: Ask
) -> None:
    eng = make()
    seen: list[tuple[str, Any]] = []
    offs = [
        eng.on(name, lambda e, n=name: seen.append((n, e)))
        for name in ("attempt_start", "attempt_end", "retry", "failover")
    ]
    fake.program("/a/", ["503", "401"])
    await eng.route(ask("g"))
    names = [n for n, _ in seen]
    assert names == [
        "attempt_start",
        "attempt_end",
        "retry",
        "attempt_start",
        "attempt_end",
        "failover",
        "attempt_start",
        "attempt_end",
    ]
    retry = next(e for n, e in seen if n == "retry")
    assert (retry.target, retry.try_number, retry.attempt.status) == ("a/m", 2, 503)
    assert retry.delay == pytest.approx(0.01)
    ends = [e for n, e in seen if n == "attempt_end"]
    assert [e.attempt.outcome for e in ends] == ["retry", "failover", "ok"]
    starts = [e for n, e in seen if n == "attempt_start"]
    assert all(s.at <= e.at for s, e in zip(starts, ends, strict=True))
    for off in offs:
        off()
    seen.clear()
    await eng.route(ask("g"))
    assert seen == []


async def test_a_failing_or_async_callback_does_not_break_routing(
    make: Make,
    fake: FakeServer,
    ask: Ask,
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng = make()
    heard: list[str] = []

    def boom(event: Any) -> None:
        raise RuntimeError("metrics are down")

    async def later(event: Any) -> None:
        heard.append(event.attempt.outcome)

    eng.on("attempt_end", boom)
    eng.on("attempt_end", later)
    with caplog.at_level(logging.ERROR, logger="engine.events"):
        assert (await eng.route(ask("g"))).provider == "a"
    await asyncio.sleep(0)
    assert heard == ["ok"]
    assert "metrics are down" in caplog.text


def test_unknown_events_are_refused(compile_yaml: Callable[..., Any]) -> None:
    eng = Engine.from_graph(compile_yaml())
    with pytest.raises(ValueError, match="unknown event"):
        eng.on("attempt", print)


async def test_secrets_stay_out_of_attempts_errors_and_reprs(make: Make, ask: Ask) -> None:
    port = refused_port()
    text = """\
version: 1
defaults: {speed: test, breaker: none, deadline: 2s}
speeds:
  test: {connect: 300ms, read: 1s, pool: 300ms, retries: 1, backoff: {base: 10ms}}
providers:
  p: {kind: openai, base_url: "${P_URL}", api_key: "${P_KEY}", models: {m: {}},
      headers: {X-Token: "${P_TOKEN}"}}
routes:
  - {match: {}, to: p/m}
"""
    secrets = {
        "P_URL": f"http://127.0.0.1:{port}/secret-path/v1",
        "P_KEY": "sk-very-secret",
        "P_TOKEN": "tok-very-secret",
    }
    eng = make(text, env=secrets)
    with pytest.raises(AllTargetsFailed) as info:
        await eng.route(ask("m"))
    err = info.value
    printable = [
        str(err),
        repr(err),
        *map(str, err.attempts),
        *map(repr, err.attempts),
        repr(eng),
        repr(eng.graph),
        eng.graph.describe(),
        str(eng.health()),
        eng.plan(ask("m")).text(),
        str(eng.plan(ask("m")).to_dict()),
        *map(repr, eng._core.runtime.connections),
        repr(eng._core.runtime.graph.providers["p"]),
    ]
    for value in (*secrets.values(), "secret-path", str(port)):
        assert not any(value in p for p in printable), value
    assert [a.error for a in err.attempts] == ["connect: Connection refused"] * 2


async def test_engine_closes_cleanly_after_a_started_stream(make: Make, fake: FakeServer, ask: Ask) -> None:
    eng = make()
    stream = eng.stream(ask("g"))
    await stream.__anext__()
    await stream.aclose()
    await eng.aclose()
    started = time.perf_counter()
    await eng.aclose()  # twice is fine
    assert time.perf_counter() - started < 0.1
    with pytest.raises(RuntimeError, match="closed"):
        await eng.route(ask("g"))


async def test_failover_renders_each_wire_format_and_reuses_only_equal_bodies(
    make: Make,
    fake: FakeServer,
    ask: Ask,
    base: str,
) -> None:
    text = base.replace(
        "  g: {strategy: priority, targets: [a/m, b/m, c/m]}",
        "  g: {strategy: priority, targets: [a/m, b/m, anth/claude-3-5-haiku-latest, gem/gemini-1.5-flash]}",
    )
    eng = make(text)
    fake.program("/a/", ["503"] * 3)
    fake.program("/b/", ["503"] * 3)
    fake.program("/anth/", ["503"] * 3)
    resp = await eng.route(ask("g"))
    assert resp.provider == "gem" and resp.text == "echo: hello there"
    bodies = {r["path"].split("/")[1]: r["body"] for r in fake.requests}
    assert bodies["a"] == bodies["b"]  # same template, kind and model: rendered once
    assert bodies["anth"]["max_tokens"] and "contents" in bodies["gem"]


async def test_a_reload_that_only_changes_prices_keeps_the_connection_and_uses_new_prices(
    make: Make,
    fake: FakeServer,
    ask: Ask,
    compile_yaml: Callable[..., Any],
    base: str,
) -> None:
    eng = make()
    first = await eng.route(ask("m"))  # the catch-all passes the model through to a
    conn = next(c for c in eng._core.runtime.connections if c.name == "a")
    eng.reload(graph=compile_yaml(base.replace("input: 1.0, output: 2.0", "input: 10.0, output: 20.0")))
    second = await eng.route(ask("m"))
    assert next(c for c in eng._core.runtime.connections if c.name == "a") is conn
    assert second.cost == pytest.approx(first.cost * 10)  # type: ignore[operator]


# -- nothing left open -------------------------------------------------------------------------

HANGING = """\
version: 1
defaults: {speed: test, breaker: standard, deadline: 5s}
speeds:
  test: {connect: 2s, read: 2s, pool: 2s, retries: 2, backoff: {base: 10ms}}
providers:
  up: {kind: openai, base_url: "{raw}/v1", api_key: k, models: {m: {}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: kb, models: {m: {}}}
groups:
  g: {strategy: priority, targets: [up/m, b/m]}
routes:
  - {match: {}, to: g}
"""


def record_sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every aiohttp session the default backend creates from here on."""
    created: list[aiohttp.ClientSession] = []
    original = AiohttpBackend._session

    def recording(self: AiohttpBackend) -> aiohttp.ClientSession:
        session = original(self)
        created.append(session)
        return session

    monkeypatch.setattr(AiohttpBackend, "_session", recording)
    return created


async def test_aclose_with_requests_in_flight_opens_nothing_again(
    raw: Raw,
    make: Make,
    fake: FakeServer,
    ask: Ask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = record_sessions(monkeypatch)
    arrived = 0
    all_in = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        while await read_request(reader) is not None:
            arrived += 1
            if arrived == 100:
                all_in.set()
            await asyncio.Event().wait()  # never answers

    eng = make(HANGING.replace("{raw}", await raw(handler)))
    tasks = [asyncio.ensure_future(eng.route(ask("x"))) for _ in range(100)]
    await asyncio.wait_for(all_in.wait(), 10)  # a bound, should the machine be very slow
    await eng.aclose()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, AllTargetsFailed) for r in results), results[:3]
    assert all("the engine was closed" in str(r) for r in results)
    assert all(
        r.attempts[-1].outcome == "cancelled"
        for r in results  # type: ignore[union-attr]
        if isinstance(r, AllTargetsFailed)
    )
    assert not any(r["path"].startswith("/b/") for r in fake.requests)  # no failover either
    assert sessions and all(s.closed for s in sessions)  # no session was opened after aclose
    assert all(s.connector is None or s.connector.closed for s in sessions)
    assert eng.health()["up"].circuit == "closed"  # closing is not the provider's failure
    with pytest.raises(RuntimeError, match="closed"):
        await eng.route(ask("x"))


async def test_a_stream_dropped_without_aclose_releases_its_graph_when_collected(
    tmp_path: Path,
    fake: FakeServer,
    ask: Ask,
) -> None:
    path = write(tmp_path, fake, ROUTES)
    async with Engine.from_file(path) as eng:
        fake.program("/a/", ["chunk_delay=20ms"])
        old_rt = eng._core.runtime
        old_a = next(c for c in old_rt.connections if c.name == "a")
        async for event in eng.stream(ask("x", "one two three four five six")):
            assert isinstance(event, TextDelta)
            break  # no aclose(), no async with: the stream is simply dropped
        assert old_rt.inflight == 1
        gc.collect()
        assert old_rt.inflight == 0
        path.write_text(ROUTES.replace("{fake}", fake.url).replace("api_key: ka", "api_key: ka2"))
        eng.reload()
        for _ in range(50):  # the async generator's and the connection's closing run as tasks
            if old_a._backend is None:
                break
            await asyncio.sleep(0.01)
        assert old_rt.retired and old_rt.connections == []
        assert old_a._backend is None and old_a.closed  # the old graph's connection closed
        assert (await eng.route(ask("x"))).provider == "a"
