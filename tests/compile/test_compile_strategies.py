"""engine.strategies, one registry: every strategy's ordering, plan text, Mermaid labels and
compile-time checks (located), the schema's enum read from the registry, and the modules kept to
the standard library. least_busy and cheapest in detail."""

from __future__ import annotations

import ast
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.graph import Group, RoutingGraph
from engine.mermaid import to_mermaid
from engine.plan import build_plan
from engine.schema import json_schema
from engine.strategies import STRATEGIES, Env, Order
from engine.strategies.cheapest import DEFAULT_OUTPUT

STRATEGY_DIR = Path(__file__).resolve().parents[2] / "engine" / "strategies"

CONFIG = """\
version: 1
defaults: {breaker: none}
providers:
  a: {kind: openai, base_url: "http://127.0.0.1:9/a", api_key: k1,
      models: {m: {price: {input: 1.0, output: 10.0}}, big: {price: {input: 30, output: 60}}}}
  b: {kind: openai, base_url: "http://127.0.0.1:9/b", api_key: k2,
      models: {m: {price: {input: 5.0, output: 1.0}}}}
  c: {kind: openai, base_url: "http://127.0.0.1:9/c", api_key: k3, models: {m: {}}}
groups:
  G:
    strategy: STRATEGY
    targets: [a/m, b/m, c/m]
routes:
  - {match: {}, to: G}
"""
HI = [{"role": "user", "content": "x" * 400}]  # 101 input tokens by the estimate


class Seen:
    """An ``Observed`` with values set by the test."""

    def __init__(
        self, scores: Mapping[str, float] | None = None, busy: Mapping[str, int] | None = None
    ) -> None:
        self.scores = dict(scores or {})
        self.seen: dict[str, float] = {}
        self.busy: dict[str, int] = dict(busy or {})

    def score(self, key: str) -> float:
        return self.scores.get(key, 0.0)


def graph(cfg: Any, strategy: str, text: str = CONFIG) -> RoutingGraph:
    g: RoutingGraph = cfg.compile(text.replace("STRATEGY", strategy))
    return g


def order_of(group: Group, observed: Seen | None = None, seed: int = 1, tokens: int = 101) -> Order:
    keys = tuple(f"{group.name}>{i}" for i in range(len(group.members)))
    env = Env(keys, random.Random(seed), observed or Seen(), lambda request: tokens)
    return STRATEGIES[group.strategy].prepare(group, env)


# -- the registry ------------------------------------------------------------------------------


def test_the_schema_enum_is_the_registry_in_its_order() -> None:
    prop = json_schema()["$defs"]["GroupSpec"]["properties"]["strategy"]
    assert (
        prop["enum"]
        == list(STRATEGIES)
        == ["priority", "round_robin", "weighted", "least_latency", "hedged", "least_busy", "cheapest"]
    )
    assert all(f"{s.name}: {s.description}" in prop["description"] for s in STRATEGIES.values())


def test_every_strategy_module_is_registered() -> None:
    modules = {p.stem for p in STRATEGY_DIR.glob("*.py")} - {"__init__", "base"}
    assert modules == set(STRATEGIES)
    assert all(s.policy and s.description for s in STRATEGIES.values())


def test_strategy_modules_import_only_the_standard_library_and_engine_values() -> None:
    bad = []
    for path in STRATEGY_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or name.startswith("engine.strategies")
                    or name in ("engine.values", "engine.graph", "engine.reach")
                )
                if not ok:
                    bad.append(f"{path.name} imports {name}")
    assert bad == []


@pytest.mark.parametrize(("typo", "meant"), [("cheapestt", "cheapest"), ("least-busy", "least_busy")])
def test_an_unknown_strategy_is_located_with_a_name_from_the_registry(
    cfg: Any, typo: str, meant: str
) -> None:
    err = cfg.one_error(CONFIG.replace("STRATEGY", typo))
    assert (err.path, err.message) == ("groups.G.strategy", f"invalid value '{typo}'")
    assert err.line == cfg.line_of(CONFIG, "strategy: STRATEGY")
    assert err.hint == f"did you mean '{meant}'?"


# -- ordering ----------------------------------------------------------------------------------


def test_priority_and_hedged_keep_the_written_order(cfg: Any) -> None:
    assert list(order_of(graph(cfg, "priority").groups["G"])("m", {})) == [0, 1, 2]
    hedged = graph(cfg, "hedged", CONFIG.replace("    targets: [a", "    hedge_after: 1s\n    targets: [a"))
    assert list(order_of(hedged.groups["G"])("m", {})) == [0, 1, 2]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_fixed_order_says_whether_the_written_order_is_always_kept(cfg: Any, strategy: str) -> None:
    text = CONFIG.replace("    targets: [a", "    hedge_after: 1s\n    targets: [a")
    group = graph(cfg, strategy, text).groups["G"]
    observations = [Seen(), Seen({"G>0": 9.0, "G>1": 1.0}), Seen(busy={"G>0": 3, "G>2": 1})]
    orders = set()
    for seen in observations:
        for seed in range(8):
            order = order_of(group, seen, seed)
            orders |= {tuple(order("m", {"messages": HI})) for _ in range(3)}
    assert (orders == {(0, 1, 2)}) is STRATEGIES[strategy].fixed_order


def test_round_robin_rotates(cfg: Any) -> None:
    order = order_of(graph(cfg, "round_robin").groups["G"])
    assert [list(order("m", {})) for _ in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_weighted_draws_by_weight_and_is_seeded(cfg: Any) -> None:
    text = CONFIG.replace("[a/m, b/m, c/m]", "[{target: a/m, weight: 1}, {target: b/m, weight: 9}]")
    group = graph(cfg, "weighted", text).groups["G"]
    one, two = order_of(group, seed=7), order_of(group, seed=7)
    firsts = [one("m", {})[0] for _ in range(300)]
    assert firsts == [two("m", {})[0] for _ in range(300)]
    assert 0.8 < firsts.count(1) / 300 < 0.97


def test_least_latency_ranks_by_score(cfg: Any) -> None:
    group = graph(cfg, "least_latency").groups["G"]
    order = order_of(group, Seen(scores={"G>0": 0.3, "G>1": 0.1, "G>2": 0.2}))
    orders = [list(order("m", {})) for _ in range(50)]
    assert orders.count([1, 2, 0]) >= 35  # the rest explore: the stalest first
    assert all(sorted(o) == [0, 1, 2] for o in orders)


def test_least_busy_puts_the_fewest_in_flight_first_ties_as_written(cfg: Any) -> None:
    group = graph(cfg, "least_busy").groups["G"]
    seen = Seen()
    order = order_of(group, seen)
    assert list(order("m", {})) == [0, 1, 2]  # idle: as written, every time
    assert list(order("m", {})) == [0, 1, 2]
    seen.busy.update({"G>0": 2, "G>1": 1})
    assert list(order("m", {})) == [2, 1, 0]  # read live: the same order object
    seen.busy["G>2"] = 1
    assert list(order("m", {})) == [1, 2, 0]


def test_cheapest_prices_the_estimated_tokens(cfg: Any) -> None:
    group = graph(cfg, "cheapest").groups["G"]
    # a: $1 in / $10 out, b: $5 in / $1 out, c: no price
    assert list(order_of(group, tokens=100)("m", {"max_tokens": 1000})) == [1, 0, 2]
    assert list(order_of(group, tokens=100_000)("m", {"max_tokens": 10})) == [0, 1, 2]
    # without max_tokens the output is DEFAULT_OUTPUT: 100 in + 256 out, b (1756) < a (2660)
    assert DEFAULT_OUTPUT == 256
    assert list(order_of(group, tokens=100)("m", {})) == [1, 0, 2]


def test_cheapest_prices_a_nested_group_by_its_cheapest_target_and_a_provider_by_the_model(
    cfg: Any,
) -> None:
    text = CONFIG.replace("  G:\n", "  inner: {strategy: priority, targets: [c/m, b/m]}\n  G:\n")
    text = text.replace("[a/m, b/m, c/m]", "[c/m, a, inner]")
    group = graph(cfg, "cheapest", text).groups["G"]
    order = order_of(group, tokens=100)
    assert list(order("m", {"max_tokens": 1000})) == [2, 1, 0]  # inner is b's price; a's m
    assert list(order("big", {"max_tokens": 1000})) == [2, 1, 0]
    assert list(order("big", {"max_tokens": 1})) == [2, 1, 0]
    assert list(order("unknown", {"max_tokens": 1})) == [2, 0, 1]  # a has no such price: last


def test_cheapest_without_any_price_keeps_the_written_order(cfg: Any) -> None:
    text = CONFIG.replace(
        "{m: {price: {input: 1.0, output: 10.0}}, big: {price: {input: 30, output: 60}}}", "{m: {}}"
    ).replace("{m: {price: {input: 5.0, output: 1.0}}}", "{m: {}}")
    g = graph(cfg, "cheapest", text)
    assert list(order_of(g.groups["G"])("m", {})) == [0, 1, 2]


# -- compile-time checks (located) ---------------------------------------------------------------


def test_hedged_needs_hedge_after(cfg: Any) -> None:
    err = cfg.one_error(CONFIG.replace("STRATEGY", "hedged"))
    assert (err.path, err.message) == ("groups.G.strategy", "strategy hedged needs hedge_after")
    assert err.line == cfg.line_of(CONFIG, "strategy: STRATEGY")


@pytest.mark.parametrize("strategy", ["least_busy", "cheapest", "priority"])
def test_hedge_after_is_ignored_by_the_others(cfg: Any, strategy: str) -> None:
    text = CONFIG.replace("    targets: [a", "    hedge_after: 1s\n    targets: [a")
    g = graph(cfg, strategy, text)
    [w] = [w for w in g.warnings if w.path == "groups.G.hedge_after"]
    assert w.message == f"hedge_after is ignored by strategy {strategy}"
    assert w.line == cfg.line_of(text, "hedge_after: 1s")


def test_cheapest_warns_when_no_member_has_a_price(cfg: Any) -> None:
    text = CONFIG.replace("[a/m, b/m, c/m]", "[c/m, inner]").replace(
        "  G:\n", "  inner: {strategy: priority, targets: [c/m]}\n  G:\n"
    )
    g = graph(cfg, "cheapest", text)
    [w] = [w for w in g.warnings if w.path == "groups.G.strategy"]
    assert w.severity == "warning" and w.message == "no member of cheapest group 'G' has a price"
    assert w.line == cfg.line_of(text, "strategy: STRATEGY")
    priced = graph(cfg, "cheapest", text.replace("[c/m, inner]", "[c/m, inner, a]"))
    assert [w for w in priced.warnings if w.path == "groups.G.strategy"] == []


# -- plan and Mermaid ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "hedged"])
def test_the_plan_says_the_strategy_policy(cfg: Any, strategy: str) -> None:
    plan = build_plan(graph(cfg, strategy), {"model": "m", "messages": HI})
    assert plan.to_dict()["tree"]["order"] == STRATEGIES[strategy].policy
    assert f"  G: {strategy}, max 3 targets\n    order: {STRATEGIES[strategy].policy}\n" in plan.text()


def test_the_plan_of_a_cheapest_group_shows_each_members_price(cfg: Any) -> None:
    plan = build_plan(graph(cfg, "cheapest"), {"model": "m", "messages": HI})
    members = plan.to_dict()["tree"]["members"]
    assert [m["price"] for m in members] == [
        {"input": 1.0, "output": 10.0},
        {"input": 5.0, "output": 1.0},
        None,
    ]
    text = plan.text()
    assert "    - a/m $1 in / $10 out per 1M\n" in text
    assert "    - c/m no price: tried last\n" in text
    least_busy = build_plan(graph(cfg, "least_busy"), {"model": "m", "messages": HI}).to_dict()
    assert all(set(m) == {"target", "model", "circuit"} for m in least_busy["tree"]["members"])


@pytest.mark.parametrize(
    ("strategy", "edge"),
    [
        ("priority", "1"),
        ("round_robin", "round_robin"),
        ("least_latency", "least_latency"),
        ("least_busy", "least_busy"),
        ("cheapest", "cheapest"),
    ],
)
def test_mermaid_labels_come_from_the_strategy(cfg: Any, strategy: str, edge: str) -> None:
    chart = to_mermaid(graph(cfg, strategy))
    assert f'g_G{{{{"G<br/>{strategy}"}}}}' in chart
    assert f"g_G -->|{edge}| t_a_m" in chart


def test_mermaid_labels_a_hedged_group_with_its_delay(cfg: Any) -> None:
    text = CONFIG.replace("    targets: [a", "    hedge_after: 400ms\n    targets: [a")
    chart = to_mermaid(graph(cfg, "hedged", text))
    assert 'g_G{{"G<br/>hedged after 400ms"}}' in chart and "g_G -->|2| t_b_m" in chart
