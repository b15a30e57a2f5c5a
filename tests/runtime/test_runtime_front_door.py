"""The runtime's front door and the facade over it: ``engine.runtime`` exports what ``api.py`` uses,
``SyncEngine`` (and ``Engine.sync``) mirrors ``Engine`` with a blocking stream, ``on()`` hands
each event name its own event class, and the constructors take their options by keyword."""

from __future__ import annotations

import ast
import asyncio
import gc
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine.api as api
import engine.runtime
from engine.api import Engine
from engine.errors import ProviderError
from engine.fake import FakeServer
from engine.graph import RoutingGraph
from engine.result import Done, TextDelta
from engine.runtime import (
    AttemptEnded,
    AttemptStarted,
    FailingOver,
    Retrying,
    Supervisor,
    SyncStream,
)
from engine.sync import SyncEngine

Ask = Callable[..., dict[str, Any]]
Compile = Callable[..., RoutingGraph]
REPO = Path(__file__).resolve().parents[2]


def test_the_front_door_exports_what_the_facade_uses() -> None:
    assert len(set(engine.runtime.__all__)) == len(engine.runtime.__all__)
    for name in engine.runtime.__all__:
        assert getattr(engine.runtime, name) is not None
    tree = ast.parse((REPO / "engine" / "api.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "engine.runtime" in modules
    assert [m for m in modules if m.startswith("engine.runtime.")] == []


def test_a_sync_stream_yields_the_events_then_done(compile_yaml: Compile, fake: FakeServer, ask: Ask) -> None:
    with SyncEngine.from_graph(compile_yaml()) as eng:
        stream = eng.stream(ask("g", "one two three"))
        assert isinstance(stream, SyncStream)
        events = list(stream)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: one two three"
        done = events[-1]
        assert isinstance(done, Done) and done.provider == "a"
        assert [a.outcome for a in done.attempts] == ["ok"]
        assert list(stream) == []  # read to its end: nothing more
        assert eng.aio._core.runtime.inflight == 0


def test_a_sync_stream_fails_over_before_its_first_event(
    compile_yaml: Compile, fake: FakeServer, ask: Ask
) -> None:
    fake.program("/a/", ["503", "503", "503"])
    with SyncEngine.from_graph(compile_yaml()) as eng:
        done = list(eng.stream(ask("g")))[-1]
        assert isinstance(done, Done) and done.provider == "b"
        assert [a.target for a in done.attempts][-1] == "b/m"


def test_a_sync_stream_closed_early_releases_its_connection(
    compile_yaml: Compile, fake: FakeServer, ask: Ask
) -> None:
    fake.program("/a/", ["chunk_delay=20ms"])
    with SyncEngine.from_graph(compile_yaml()) as eng:
        with eng.stream(ask("g", "one two three four five six seven")) as stream:
            first = next(stream)
            assert isinstance(first, TextDelta)
        rt = eng.aio._core.runtime
        conn = next(c for c in rt.connections if c.name == "a")
        assert conn._backend.in_use() == 0  # type: ignore[union-attr]
        assert rt.inflight == 0
        with pytest.raises(StopIteration):
            next(stream)


def test_a_sync_stream_dropped_unclosed_is_closed_on_the_loop(
    compile_yaml: Compile, fake: FakeServer, ask: Ask
) -> None:
    fake.program("/a/", ["chunk_delay=20ms"])
    with SyncEngine.from_graph(compile_yaml()) as eng:
        stream = eng.stream(ask("g", "one two three four five six seven"))
        next(stream)
        del stream
        gc.collect()
        rt = eng.aio._core.runtime
        for _ in range(200):  # the close runs on the loop thread: wait for it
            if rt.inflight == 0:
                break
            threading.Event().wait(0.01)
        assert rt.inflight == 0


def test_a_sync_stream_raises_what_the_async_one_does(
    compile_yaml: Compile, fake: FakeServer, ask: Ask
) -> None:
    fake.program(None, ["400"])
    with SyncEngine.from_graph(compile_yaml()) as eng, pytest.raises(ProviderError):
        list(eng.stream(ask("g")))


async def test_the_sync_twin_refuses_to_run_inside_a_loop(compile_yaml: Compile, ask: Ask) -> None:
    eng = SyncEngine.from_graph(compile_yaml())
    with pytest.raises(RuntimeError, match="await route"):
        eng.route(ask())
    with pytest.raises(RuntimeError, match="async for"):
        eng.stream(ask())
    with pytest.raises(RuntimeError, match="await areload"):
        eng.reload(REPO / "routes.yaml")
    await eng.aio.aclose()


def test_engine_sync_is_the_same_engine(compile_yaml: Compile, fake: FakeServer, ask: Ask) -> None:
    eng = Engine.from_graph(compile_yaml())
    with eng.sync as sync:
        assert sync is eng.sync and sync.aio is eng and sync.graph is eng.graph
        assert sync.route(ask("g")).provider == "a"
        assert eng.health()["a"].tries == 1  # one engine: one tally
        assert eng.route_sync(ask("g")).provider == "a"
        assert sync.health()["a"].tries == 2
    with pytest.raises(RuntimeError, match="closed"):
        eng.route_sync(ask("g"))


def test_the_sync_reload_compiles_on_the_callers_thread(
    tmp_path: Path, fake: FakeServer, ask: Ask, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(base.replace("{fake}", fake.url))
    threads: list[str] = []
    compiled_on: list[str] = []
    real = api.compile_file

    def compile_file(*args: Any, **kwargs: Any) -> RoutingGraph:
        compiled_on.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "compile_file", compile_file)
    with SyncEngine.from_file(path, seed=3) as eng:
        assert eng.route(ask("z")).provider == "a"
        eng.on("attempt_start", lambda e: threads.append(threading.current_thread().name))
        path.write_text(base.replace("{fake}", fake.url).replace("    to: a\n", "    to: b/m\n"))
        graph = eng.reload()
        assert eng.graph is graph
        assert eng.route(ask("z")).provider == "b"
    here = threading.current_thread().name
    assert compiled_on == [here, here] and threads == ["engine-sync"]  # requests: on the loop


async def test_on_hands_each_event_name_its_event_class(
    make: Callable[..., Engine], fake: FakeServer, ask: Ask
) -> None:
    eng = make()
    seen: dict[str, set[type]] = {}
    for name in ("attempt_start", "attempt_end", "retry", "failover"):
        eng.on(name, lambda e, n=name: seen.setdefault(n, set()).add(type(e)))  # type: ignore[call-overload]
    fake.program("/a/", ["503", "503", "503"])
    await eng.route(ask("g"))
    assert seen == {
        "attempt_start": {AttemptStarted},
        "attempt_end": {AttemptEnded},
        "retry": {Retrying},
        "failover": {FailingOver},
    }


def test_constructors_take_their_options_by_keyword(tmp_path: Path, fake: FakeServer, base: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(base.replace("{fake}", fake.url))
    eng = Engine.from_file(path, None, seed=1, transport="aiohttp")
    assert isinstance(eng._core, Supervisor)
    asyncio.run(eng.aclose())
    with pytest.raises(TypeError):
        Engine.from_file(path, None, bogus=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Engine.from_file(path, None, "aiohttp")  # type: ignore[misc]


CHECKED = """\
from engine.api import Engine
from engine.runtime import AttemptStarted, BreakerChanged

def on_start(e: AttemptStarted) -> None: ...
def on_breaker(e: BreakerChanged) -> None: ...

def wire(eng: Engine) -> None:
    eng.on("attempt_start", on_start)
    eng.on("breaker", on_breaker)
    eng.on("breaker", lambda e: print(e.circuit, e.state))
    eng.on("attempt_start", on_breaker)  # the wrong event class
    eng.on("attempt", on_start)  # no such event
    Engine.from_file("routes.yaml", sed=1)  # no such option
"""


def test_the_public_surface_type_checks(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(CHECKED)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(snippet)],  # the options of the CI run: its cache,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    errors = sorted({int(n) for n in re.findall(r"snippet\.py:(\d+): error:", out.stdout)})
    assert errors == [11, 12, 13], out.stdout
