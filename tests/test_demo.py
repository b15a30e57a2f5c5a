"""The README's run command: the demo routes real requests through a config and tells only what
the engine's events and attempts say — on the shipped config and on configs without a hedged
group, without breakers, or with providers it must not call."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import demo
from engine.cli import main
from engine.compiler import compile_file
from engine.fake import refused_port
from engine.runtime.events import BreakerChanged, FailingOver, Retrying

ROOT = Path(__file__).resolve().parent.parent

NO_HEDGE = """\
version: 1
defaults: {deadline: 10s}
speeds:
  quick: {connect: 500ms, read: 2s, pool: 1s, retries: 1, backoff: {base: 10ms}}
breakers:
  four: {failures: 4, recovery: 5s}
providers:
  alpha: {kind: openai, base_url: "http://127.0.0.1:PORT/v1", api_key: k1, speed: quick,
          breaker: four, models: [m1]}
  beta: {kind: anthropic, base_url: "http://127.0.0.1:PORT/v1", api_key: k2, speed: quick,
         models: [claude-x]}
groups:
  main: {strategy: priority, targets: [alpha/m1, beta/claude-x]}
routes:
  - match: {model: "smart-*"}
    to: main
  - match: {}
    to: beta/claude-x
"""

NO_BREAKER = """\
version: 1
defaults: {breaker: none, deadline: 10s}
speeds:
  quick: {connect: 500ms, read: 2s, pool: 1s, retries: 2, backoff: {base: 10ms}}
cache: {responses: {ttl: 1m, max_temperature: 0.2}}
providers:
  one: {kind: openai, base_url: "http://127.0.0.1:PORT/p1/v1", api_key: k1, speed: quick,
        models: [m]}
  two: {kind: openai, base_url: "http://127.0.0.1:PORT/p2/v1", api_key: k2, speed: quick,
        models: [m]}
groups:
  race: {strategy: hedged, targets: [one/m, two/m], hedge_after: 150ms}
routes:
  - match: {metadata: {tier: gold}}
    to: race
  - match: {}
    to: one/m
"""


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every event the demo's narrator received (to hold its text against)."""
    events: list[Any] = []
    hear = demo.Narrator._hear

    def spy(self: demo.Narrator, event: Any) -> None:
        events.append(event)
        hear(self, event)

    monkeypatch.setattr(demo.Narrator, "_hear", spy)
    return events


def _run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(text.replace("PORT", str(refused_port())), encoding="utf-8")
    assert main(["demo", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _only_what_happened(out: str, events: list[Any]) -> None:
    """Every event line of the narration is an event that fired, and the other way round."""
    told = re.findall(r"^    event: (.*)$", out, re.M)
    fired = []
    for e in events:
        if isinstance(e, Retrying):
            fired.append(f"retry {e.target}")
        elif isinstance(e, FailingOver):
            fired.append(f"failover from {e.target}")
        elif isinstance(e, BreakerChanged):
            fired.append(f"circuit {e.circuit} is {e.state}")
    assert [re.sub(r" in \d+ms after .*", "", t) for t in told] == fired
    opened = {e.circuit for e in events if isinstance(e, BreakerChanged) and e.state == "open"}
    for circuit in re.findall(r"circuit (\S+) became open", out):
        assert circuit in opened
    if not opened:
        assert "skipped circuit open" not in out
        assert "circuit=open" not in out


def _shipped_on_a_free_port(tmp_path: Path) -> Path:
    """The shipped routes.yaml and its ci profile, the profile's fake-provider port (8400, where
    ``engine fake`` and ``.ci/demo`` listen) swapped for a free one: the demo starts its fake there."""
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    ci = (ROOT / "profiles" / "ci.yaml").read_text(encoding="utf-8")
    assert ci.count("http://127.0.0.1:8400") == len(compile_file(ROOT / "routes.yaml").providers)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ci.yaml").write_text(
        ci.replace("http://127.0.0.1:8400", f"http://127.0.0.1:{refused_port()}"), encoding="utf-8"
    )
    return tmp_path / "routes.yaml"


def test_demo_shows_retry_failover_breaker_stream_and_hedge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], heard: list[Any]
) -> None:
    assert main(["demo", str(_shipped_on_a_free_port(tmp_path)), "--profile", "ci"]) == 0
    out = capsys.readouterr().out
    _only_what_happened(out, heard)
    assert "flowchart LR" in out  # the graph
    assert "request body for openai/gpt-4o-mini" in out  # the plan
    assert "openai/gpt-4o-mini retry 503" in out
    assert "event: failover from openai/gpt-4o-mini" in out
    assert "event: circuit openai is open" in out
    assert "openai/gpt-4o-mini skipped circuit open" in out
    assert "ProviderError" in out and "fatal 400" in out
    assert "ttft" in out
    assert "cancelled" in out  # the hedge loser
    assert "openai     circuit=open" in out
    assert " cached " in out  # the second identical temperature-0 request
    assert "skipped:" not in out  # the shipped config has something for every step


def test_a_config_without_a_hedged_group_or_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], heard: list[Any]
) -> None:
    out = _run(tmp_path, NO_HEDGE, capsys)
    _only_what_happened(out, heard)
    assert "skipped: hedging: no route leads to a hedged group" in out
    assert "skipped: the response cache: this config has no cache.responses" in out
    assert "'fast'" not in out and "cancelled" not in out and " cached " not in out
    # the breaker of 4 failures opens on the second failing request (2 tries each), and says so
    assert "event: circuit alpha is open" in out
    assert "alpha/m1 skipped circuit open" in out


def test_a_config_without_breakers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], heard: list[Any]
) -> None:
    out = _run(tmp_path, NO_BREAKER, capsys)
    _only_what_happened(out, heard)
    assert not any(isinstance(e, BreakerChanged) for e in heard)
    assert "skipped: circuit breaking: provider one has no breaker" in out
    assert [
        line
        for line in out.splitlines()
        if "circuit" in line and "circuit=none" not in line and "circuit breaking" not in line
    ] == []
    assert "event: failover from one/m" in out  # the hedged group fails over too
    assert "from the response cache" in out


def test_a_config_that_would_call_real_providers_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        NO_HEDGE.replace("http://127.0.0.1:PORT/v1", "https://api.example.com/v1", 1).replace(
            "PORT", str(refused_port())
        ),
        encoding="utf-8",
    )
    assert main(["demo", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "alpha points elsewhere" in err and "--profile ci" in err


def test_redis_that_is_down_is_one_line_per_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        NO_HEDGE.replace("PORT", str(refused_port())).replace(
            "version: 1\n", f"version: 1\ncache: {{backend: 'redis://127.0.0.1:{refused_port()}/0'}}\n"
        ),
        encoding="utf-8",
    )
    assert main(["demo", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "answered by alpha/m1" in out  # Redis trouble never fails a request
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith("engine: warning: ") for line in lines), err
    assert any("shared state degraded" in line for line in lines)  # circuits go on in process


def test_warnings_logged_with_a_traceback_print_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    def check(argv: Any) -> int:
        try:
            raise ConnectionError("shared state unavailable (Redis)")
        except ConnectionError:
            logging.getLogger("engine.breakers").warning("circuit store failed", exc_info=True)
        return 0

    monkeypatch.setattr("engine.cli._main", check)
    assert main(["check"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "engine: warning: circuit store failed: ConnectionError: shared state unavailable (Redis)\n"
    )
    assert not logging.getLogger("engine").handlers  # removed again when the command ends
