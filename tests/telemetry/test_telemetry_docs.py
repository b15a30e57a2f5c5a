"""The README's "Observing it" names every metric and label the engine exposes, and every query of
the Grafana dashboard reads a metric and labels that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Clock, samples

from engine.graph import RoutingGraph
from engine.result import Attempt, Done, Response, Usage
from engine.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "examples" / "grafana-dashboard.json"
_SUFFIXES = ("_bucket", "_count", "_sum")


def _everything(tel: Telemetry, graph: RoutingGraph, clock: Clock) -> None:
    """One of each: a retried, failed-over stream, a cached answer, a rate-limit wait, a circuit."""
    rec = tel.request_started(graph.routes[0], "chat", stream=True)
    rec.cache_lookup(False)
    rec.waited(0.1, target="groq/llama-3.1-8b-instant")
    tries = (
        Attempt("oa/gpt-4o-mini", "retry", 503, latency=0.1, kind="status"),
        Attempt("oa/gpt-4o-mini", "failover", latency=0.1, kind="timeout"),
        Attempt("groq/llama-3.1-8b-instant", "skipped", kind="rate_limited"),
        Attempt("anth/claude-3-5-haiku-latest", "ok", 200, latency=0.3),
    )
    clock.now = 0.3
    rec.first_chunk()
    clock.now = 0.6
    for a in tries:
        rec.try_ended(a)
    rec.ended(Done("anth", "claude-3-5-haiku-latest", usage=Usage(3, 4), cost=0.1, attempts=tries), chunks=3)
    rec = tel.request_started(graph.routes[0], "chat")
    rec.cache_lookup(True)
    rec.ended(Response("x", "oa", "gpt-4o-mini", cached=True))
    tel.circuit_changed("oa", "open")


def _families(tel: Telemetry) -> dict[str, set[str]]:
    """Metric name (as a query writes it) -> its label names."""
    out: dict[str, set[str]] = {}
    for name, labels in samples(tel):
        if name.endswith("_created"):  # prometheus_client's creation timestamps, not queried
            continue
        out.setdefault(name, set()).update(k for k, _ in labels)
    return out


def _section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Observing it", 1)[1].split("\n## ", 1)[0]


def test_the_readme_lists_every_metric_and_label(tel: Telemetry, graph: RoutingGraph, clock: Clock) -> None:
    _everything(tel, graph, clock)
    families = _families(tel)
    assert len(families) > 20  # the scenario reached every kind of metric
    text = _section()
    names = {re.sub(r"(_bucket|_count|_sum)$", "", n) for n in families}
    assert sorted(n for n in names if f"`{n}`" not in text) == []
    labels = set().union(*families.values()) - {"le"}
    assert sorted(lab for lab in labels if f"`{lab}`" not in text) == []


def test_every_dashboard_query_reads_metrics_that_exist(
    tel: Telemetry, graph: RoutingGraph, clock: Clock
) -> None:
    _everything(tel, graph, clock)
    families = _families(tel)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 17
    used: set[str] = set()
    for expr in exprs:
        selectors = re.sub(r"by \([^)]*\)", "", expr)
        for name in re.findall(r"\b((?:gen_ai|engine)_[a-z_]+)\b", selectors):
            assert name in families, f"{name} in {expr!r}"
            used.add(re.sub(r"(_bucket|_count|_sum)$", "", name))
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert label == "le" or any(label in ls for ls in families.values()), label
    exposed = {re.sub(r"(_bucket|_count|_sum)$", "", n) for n in families}
    assert sorted(exposed - used) == []  # every metric has a panel
