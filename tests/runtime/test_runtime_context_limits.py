"""Context windows and route limits over the fake: a model whose ``context`` is too small, and a
target that breaks the route's ``max_price`` or ``max_latency``, are skipped at no network cost
(attempts say why, plans show it); a provider's own "context length exceeded" is kind ``context``
and fails over where a classifier says so; a ``max_price`` that leaves no target is located."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import AllTargetsFailed, ConfigError, ProviderError
from engine.fake import FakeServer

CONFIG = """\
version: 1
defaults: {speed: t, retry: transient, breaker: none, deadline: 5s}
speeds:
  t: {connect: 500ms, read: 2s, pool: 1s, retries: 0}
retry:
  long: {failover_on: {status: [500], errors: [context]}}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456, retry: long,
      models: {small: {context: 50, price: {input: 0.1, output: 0.2}},
               pricey: {context: 100000, price: {input: 5.0, output: 15.0}}}}
  b: {kind: openai, base_url: "{fake}/b/v1", api_key: key-b-123456,
      models: {big: {context: 100000, price: {input: 0.5, output: 1.0}}}}
  c: {kind: openai, base_url: "{fake}/c/v1", api_key: key-c-123456, models: {free: {}}}
groups:
  fit: {strategy: priority, targets: [a/small, b/big]}
  cheap: {strategy: priority, targets: [a/pricey, c/free, b/big]}
  quick: {strategy: priority, targets: [a/small, b/big]}
routes:
  - match: {model: fit}
    to: fit
  - match: {model: cheap}
    to: cheap
    max_price: {input: 1.0, output: 2.0}
  - match: {model: quick}
    to: quick
    max_latency: 100ms
"""

LONG = "word " * 80  # 400 characters: ~101 tokens, past a/small's 50


def _paths(fake: FakeServer) -> list[str]:
    return [r["path"].split("/")[1] for r in fake.requests]


async def test_a_request_too_long_for_a_window_skips_it_unsent(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., dict[str, Any]]
) -> None:
    eng = make(CONFIG)
    short = await eng.route(ask("fit", "hi"))
    assert short.provider == "a" and [a.outcome for a in short.attempts] == ["ok"]
    fake.reset()
    resp = await eng.route(ask("fit", LONG))
    first, second = resp.attempts
    assert (first.target, first.outcome, first.kind) == ("a/small", "skipped", "context")
    assert first.detail is not None and "holds 50" in first.detail
    assert (second.target, second.outcome) == ("b/big", "ok")
    assert _paths(fake) == ["b"]  # nothing went to a


async def test_max_tokens_counts_against_the_window(
    make: Callable[..., Engine], ask: Callable[..., dict[str, Any]]
) -> None:
    resp = await make(CONFIG).route(ask("fit", "hi", max_tokens=60))
    assert [(a.target, a.kind) for a in resp.attempts] == [("a/small", "context"), ("b/big", None)]


def test_the_plan_shows_the_estimate_and_what_it_rules_out(
    make: Callable[..., Engine], ask: Callable[..., dict[str, Any]]
) -> None:
    plan = make(CONFIG).plan(ask("fit", LONG))
    assert plan.needed_tokens == 101
    small, big = plan.targets
    assert small.context == 50 and small.ruled_out is not None and small.ruled_out.startswith("context:")
    assert big.ruled_out is None and plan.first_target == "b/big"
    text = plan.text()
    assert "the request needs ~101 tokens" in text and "RULED OUT context:" in text
    assert plan.to_dict()["targets"][0]["ruled_out"] == small.ruled_out


@pytest.mark.parametrize(
    ("route", "kind"),
    [("a", "openai"), ("anth", "anthropic"), ("gem", "gemini"), ("oll", "ollama")],
)
async def test_a_providers_context_error_is_kind_context(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., dict[str, Any]], route: str, kind: str
) -> None:
    fake.program(kind, ["too_long"])
    with pytest.raises(ProviderError) as caught:  # transient does not fail over on a 400
        await make().route(ask(route, "hi"))
    last = caught.value.attempts[-1]
    assert (last.outcome, last.kind, last.status) == ("fatal", "context", 400)


async def test_failover_on_context_moves_to_a_larger_model(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., dict[str, Any]]
) -> None:
    fake.program("/a/", ["too_long"])
    resp = await make(CONFIG).route(ask("fit", "hi"))
    first, second = resp.attempts
    assert (first.target, first.outcome, first.kind, first.status) == ("a/small", "failover", "context", 400)
    assert "maximum context length" in (first.detail or "")
    assert (second.target, second.outcome) == ("b/big", "ok")


async def test_max_price_skips_targets_over_it_after_the_order(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., dict[str, Any]]
) -> None:
    eng = make(CONFIG)
    resp = await eng.route(ask("cheap", "hi"))
    assert [(a.target, a.outcome, a.kind) for a in resp.attempts] == [
        ("a/pricey", "skipped", "constraint"),
        ("c/free", "skipped", "constraint"),  # no price: cannot be shown to be under it
        ("b/big", "ok", None),
    ]
    assert "input $5 > $1" in (resp.attempts[0].detail or "")
    assert _paths(fake) == ["b"]
    plan = eng.plan(ask("cheap", "hi"))
    assert plan.limits == "max_price=1/2" and plan.first_target == "b/big"
    assert [t.ruled_out is not None for t in plan.targets] == [True, True, False]
    assert "limits   max_price=1/2" in plan.text()


async def test_max_latency_skips_a_target_whose_p95_is_over_it(
    make: Callable[..., Engine], fake: FakeServer, ask: Callable[..., dict[str, Any]]
) -> None:
    eng = make(CONFIG)
    fake.program("/a/", ["latency=150ms"])
    measured = await eng.route(ask("quick", "hi"))  # unmeasured: tried, and now slow
    assert measured.provider == "a"
    probe = await eng.route(ask("quick", "hi"))  # the first time over: its probe
    assert probe.provider == "a"
    resp = await eng.route(ask("quick", "hi"))
    assert [(a.target, a.outcome, a.kind) for a in resp.attempts] == [
        ("a/small", "skipped", "constraint"),
        ("b/big", "ok", None),
    ]
    assert "max_latency: recent p95" in (resp.attempts[0].detail or "")
    plan = eng.plan(ask("quick", "hi"))
    assert plan.targets[0].ruled_out is not None and plan.first_target == "b/big"


async def test_every_target_ruled_out_fails_with_the_reasons(
    make: Callable[..., Engine], ask: Callable[..., dict[str, Any]]
) -> None:
    text = CONFIG.replace(
        "fit: {strategy: priority, targets: [a/small, b/big]}",
        "fit: {strategy: priority, targets: [a/small]}",
    )
    with pytest.raises(AllTargetsFailed) as caught:
        await make(text).route(ask("fit", LONG))
    assert [a.kind for a in caught.value.attempts] == ["context"]


def test_a_max_price_that_leaves_no_target_is_a_located_error() -> None:
    text = CONFIG.replace("max_price: {input: 1.0, output: 2.0}", "max_price: {input: 0.01}")
    with pytest.raises(ConfigError) as caught:
        compile_text(text.replace("{fake}", "http://127.0.0.1:9"))
    (problem,) = [p for p in caught.value.problems if p.severity == "error"]
    assert (problem.line, problem.col) == (text.splitlines().index("    max_price: {input: 0.01}") + 1, 16)
    assert "rules out every target" in problem.message and "a/pricey" in problem.message
    assert "c/free (max_price: the model has no price)" in problem.message


def test_the_graph_description_shows_the_limits() -> None:
    graph = compile_text(CONFIG.replace("{fake}", "http://127.0.0.1:9"))
    text = graph.describe()
    assert "max_price=1/2" in text and "max_latency=100ms" in text
