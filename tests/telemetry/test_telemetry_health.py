"""Recent-window latency percentiles and health scores, alone and fed by the recorder."""

from __future__ import annotations

import pytest

from engine.graph import RoutingGraph
from engine.result import Attempt
from engine.telemetry import Telemetry
from engine.telemetry.health import HealthTracker, Window, score


def test_the_window_keeps_only_the_recent_tries() -> None:
    w = Window(4)
    for latency in (9.0, 9.0, 1.0, 2.0, 3.0, 4.0):  # the two slow ones fall out
        w.record(True, latency)
    assert w.count == 4 and w.ok_total == 6
    assert w.p50 == 2.0 and w.p95 == 4.0 and w.mean == 2.5
    w.record(False, 30.0)  # overwrites 1.0; a failure adds no latency
    assert w.success_rate == 0.75
    assert w.mean == 3.0 and w.p50 == 3.0
    assert w.failed_total == 1


def test_percentiles_by_nearest_rank() -> None:
    w = Window(100)
    for i in range(1, 101):
        w.record(True, i / 100)
    assert w.p50 == 0.5 and w.p95 == 0.95 and w.quantile(1.0) == 1.0


def test_the_score_weighs_success_by_latency_against_the_read_timeout() -> None:
    assert score(None, None, 10.0) == 1.0  # nothing known yet
    assert score(1.0, 0.0, 10.0) == 1.0
    assert score(1.0, 5.0, 10.0) == 0.75
    assert score(1.0, 40.0, 10.0) == 0.5  # at or past the timeout: half
    assert score(0.5, 5.0, 10.0) == 0.375
    assert score(0.0, None, 10.0) == 0.0


def test_skips_are_counted_apart() -> None:
    t = HealthTracker(8)
    t.record("a", True, 1.0)
    t.skipped("a")
    h = t.health("a", 4.0)
    assert (h.ok, h.failed, h.skipped, h.window) == (1, 0, 1, 1)
    assert h.score == 0.875
    with pytest.raises(ValueError):
        Window(0)


def test_the_recorder_feeds_targets_and_providers(tel: Telemetry, graph: RoutingGraph) -> None:
    rec = tel.request_started(graph.routes[0], "chat")
    for a in (
        Attempt("oa/gpt-4o-mini", "retry", 503, latency=0.4, kind="status"),
        Attempt("oa/gpt-4o-mini", "ok", 200, latency=1.0),
        Attempt("groq/llama-3.1-8b-instant", "skipped", kind="circuit_open"),
        Attempt("anth/claude-3-5-haiku-latest", "cancelled", latency=0.3, kind="cancelled"),
    ):
        rec.try_ended(a)
    health = tel.health()
    oa = health["targets"]["oa/gpt-4o-mini"]
    assert (oa.ok, oa.failed, oa.success_rate, oa.p50) == (1, 1, 0.5, 1.0)
    assert oa.score == 0.375  # half answered; p95 1s against its speed's 2s read timeout
    assert health["providers"]["oa"].score == oa.score
    assert health["providers"]["groq"].skipped == 1
    assert "anth" not in health["providers"]  # a hedge that lost is no sign of ill health
