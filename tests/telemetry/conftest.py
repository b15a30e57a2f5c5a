"""Fixtures for the telemetry tests: a compiled graph with one provider of each kind (and two
OpenAI-compatible hosts), a settable clock, and the Prometheus exposition of a ``Telemetry``
parsed back with ``prometheus_client.parser``."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine.compiler import compile_text
from engine.graph import RoutingGraph
from engine.telemetry import Telemetry

CONFIG = """\
version: 1
defaults: {breaker: none}
speeds:
  quick: {read: 2s}
providers:
  oa: {kind: openai, api_key: sk-secret-openai-123, speed: quick,
       models: {gpt-4o-mini: {price: {input: 1.0, output: 2.0}}}}
  groq: {kind: openai, base_url: "https://api.groq.com/openai/v1", api_key: gsk-secret-456,
         models: [llama-3.1-8b-instant]}
  anth: {kind: anthropic, api_key: sk-ant-secret-789, models: [claude-3-5-haiku-latest]}
  gem: {kind: gemini, api_key: gem-secret-000, models: [gemini-2.0-flash]}
  local: {kind: openai, base_url: "http://127.0.0.1:8000/v1"}
groups:
  chat: {targets: [oa/gpt-4o-mini, groq/llama-3.1-8b-instant, anth/claude-3-5-haiku-latest]}
routes:
  - match: {model: chat}
    to: chat
  - match: {model: gem}
    to: gem/gemini-2.0-flash
  - to: local
"""


class Clock:
    """A clock the test moves: ``clock.now = 1.5``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def graph() -> RoutingGraph:
    return compile_text(CONFIG)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tel(graph: RoutingGraph, clock: Clock) -> Telemetry:
    return Telemetry.for_graph(graph, registry=CollectorRegistry(), clock=clock)


def samples(tel: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text: (name, labels) -> value."""
    text = tel.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(tel: Telemetry, name: str, **labels: Any) -> float:
    """The value of one sample (0 when the series does not exist)."""
    want = {k: str(v) for k, v in labels.items()}
    found = [v for (n, ls), v in samples(tel).items() if n == name and dict(ls) == want]
    assert len(found) <= 1
    return found[0] if found else 0.0


def series(tel: Telemetry, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called ``name``."""
    return [dict(ls) for (n, ls) in samples(tel) if n == name]
