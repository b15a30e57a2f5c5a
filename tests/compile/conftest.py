"""Shared fixtures for the compile-time tests: one known-good config that tests mutate one key at a
time, and helpers that compile text and return the graph or the problems."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.compiler import compile_text
from engine.errors import ConfigError, Problem
from engine.graph import RoutingGraph

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# Worst cases (see test_compile_compiler.py): quick 6.1s, fast 49s, slow 330s; chat 55.1s.
GOOD = """\
version: 1
defaults:
  speed: medium
  retry: transient
  breaker: standard
  deadline: 60s
speeds:
  quick: {connect: 1s, read: 2s, pool: 1s, retries: 1, backoff: {base: 100ms, factor: 2, max: 1s}}
retry:
  patient:
    retry_on: {status: [429, 503], errors: [timeout]}
    retry_after: ignore
breakers:
  touchy: {failures: 2, recovery: 10s, scope: model}
cache:
  backend: memory
  models: {ttl: 1h}
  responses: {ttl: 10m, max_temperature: 0.1}
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    speed: quick
    retry: patient
    breaker: touchy
    headers: {OpenAI-Organization: "${OPENAI_ORG:-org-default}"}
    models:
      gpt-4o-mini: {context: 128000, price: {input: 0.15, output: 0.60}}
  claude:
    kind: anthropic
    api_key: ${ANTHROPIC_API_KEY}
    speed: fast
    models: {claude-3-5-haiku-latest: {}}
  local:
    kind: ollama
    speed: slow
    breaker: none
    models: [llama3.2]
groups:
  chat:
    strategy: priority
    targets: [openai/gpt-4o-mini, claude/claude-3-5-haiku-latest]
  mix:
    strategy: weighted
    targets:
      - {target: chat, weight: 3}
      - {target: local/llama3.2, weight: 1}
    max_attempts: 2
routes:
  - match: {model: chat}
    to: chat
  - match: {metadata: {tier: free}}
    to: mix
    deadline: 7m
  - match: {model: "llama*"}
    to: local
    deadline: 10m
  - match: {}
    to: chat
"""

ENV: Mapping[str, str] = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}


@dataclass
class Cfg:
    """The known-good config and ways to break it."""

    base_dir: Path
    text: str = GOOD
    env: dict[str, str] = field(default_factory=lambda: dict(ENV))

    def replace(self, old: str, new: str, text: str | None = None) -> str:
        """``text`` (default: the good config) with the single occurrence of ``old`` replaced."""
        src = self.text if text is None else text
        assert src.count(old) == 1, f"{old!r} occurs {src.count(old)} times"
        return src.replace(old, new)

    def compile(self, text: str | None = None, **kw: object) -> RoutingGraph:
        kw.setdefault("env", self.env)
        kw.setdefault("base_dir", self.base_dir)
        return compile_text(self.text if text is None else text, **kw)  # type: ignore[arg-type]

    def problems(self, text: str, **kw: object) -> list[Problem]:
        """The problems of a config that must not compile."""
        with pytest.raises(ConfigError) as info:
            self.compile(text, **kw)
        return list(info.value.problems)

    def errors(self, text: str, **kw: object) -> list[Problem]:
        return [p for p in self.problems(text, **kw) if p.severity == "error"]

    def one_error(self, text: str, **kw: object) -> Problem:
        errs = self.errors(text, **kw)
        assert len(errs) == 1, "\n".join(map(str, errs))
        return errs[0]

    @staticmethod
    def line_of(text: str, needle: str) -> int:
        """1-based line of the single line containing ``needle``."""
        hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
        assert len(hits) == 1, f"{needle!r} on lines {hits}"
        return hits[0]


@pytest.fixture
def cfg(tmp_path: Path) -> Cfg:
    return Cfg(tmp_path)


@pytest.fixture
def good(cfg: Cfg) -> RoutingGraph:
    return cfg.compile()
