"""engine.plan: the dry run — which route and why, the order of targets, the cache decision, open
circuits, and the body the first target would receive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.errors import NoRouteError
from engine.graph import CacheConfig, RoutingGraph
from engine.plan import (
    PlanBody,
    PlanBreaker,
    PlanPrice,
    PlanSpeed,
    PlanTreeGroup,
    PlanTreeTarget,
    build_plan,
    cache_decision,
)

HI = [{"role": "user", "content": "hi"}]


def _req(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": HI, **kw}


# -- which route and why ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_, index, why",
    [
        (_req("chat"), 0, "first match (route 0): model 'chat' equals 'chat'"),
        (_req("x", metadata={"tier": "free"}), 1, "first match (route 1): metadata.tier == 'free'"),
        (_req("llama3.1"), 2, "first match (route 2): model 'llama3.1' matches glob 'llama*'"),
        (_req("gpt-5"), 3, "first match (route 3): catch-all"),
        (_req("chat", metadata={"tier": "free"}), 0, "first match (route 0): model 'chat' equals 'chat'"),
    ],
)
def test_route_and_why(good: RoutingGraph, request_: dict[str, Any], index: int, why: str) -> None:
    d = build_plan(good, request_).to_dict()
    assert d["route"]["index"] == index and d["route"]["why"] == why
    assert d["route"]["where"].startswith("routes.yaml:")
    assert f"why      {why}" in build_plan(good, request_).text()


def test_route_where_is_the_line_of_the_route(cfg: Any, good: RoutingGraph) -> None:
    where = build_plan(good, _req("x", metadata={"tier": "free"})).to_dict()["route"]["where"]
    assert where == f"routes.yaml:{cfg.line_of(cfg.text, '{metadata: {tier: free}}')}"


def test_no_route(cfg: Any) -> None:
    g = cfg.compile(cfg.replace("  - match: {}\n    to: chat\n", ""))
    with pytest.raises(NoRouteError, match="no route matches model 'other'"):
        build_plan(g, _req("other"))


def test_provider_alone_passes_the_model_through(good: RoutingGraph) -> None:
    d = build_plan(good, _req("llama3.1")).to_dict()
    assert d["first_target"] == "local"
    assert d["targets"][0]["model"] == "llama3.1"
    assert d["body"]["json"]["model"] == "llama3.1"


# -- targets, strategy, budgets ---------------------------------------------------------------


def test_priority_plan_lists_targets_with_their_settings(good: RoutingGraph) -> None:
    plan = build_plan(good, _req("chat"))
    assert isinstance(plan.tree, PlanTreeGroup)
    assert (plan.tree.strategy, plan.tree.order) == ("priority", "in the order written")
    assert [t.target for t in plan.targets] == ["openai/gpt-4o-mini", "claude/claude-3-5-haiku-latest"]
    t = plan.targets[0]
    assert t.speed == PlanSpeed("quick", "1s", "2s", "1s", 1, "100ms x2 max 1s jitter 0s", "6.1s")
    assert (t.retry.classifier, t.retry.retry_after) == ("patient", "ignore")
    assert t.retry.retry_on == (429, 503, "timeout")
    assert t.breaker == PlanBreaker("touchy", 2, "10s", "model", "closed")
    assert t.price == PlanPrice(0.15, 0.6)
    assert (plan.deadline, plan.worst_case, plan.worst_case_exceeds_deadline) == ("1m", "55.1s", False)
    d = plan.to_dict()["targets"][0]
    assert d["speed"] == {
        "name": "quick",
        "connect": "1s",
        "read": "2s",
        "pool": "1s",
        "retries": 1,
        "backoff": "100ms x2 max 1s jitter 0s",
        "worst_case": "6.1s",
    }
    assert d["retry"]["retry_on"] == [429, 503, "timeout"]
    assert d["breaker"] == {
        "name": "touchy",
        "failures": 2,
        "recovery": "10s",
        "scope": "model",
        "state": "closed",
    }
    assert d["price"] == {"input": 0.15, "output": 0.6}


# -- the Plan type: frozen parts, one JSON shape --------------------------------------------------


def test_a_plan_is_frozen_and_to_dict_hands_out_fresh_json(good: RoutingGraph) -> None:
    import dataclasses

    plan = build_plan(good, _req("chat", temperature=0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.first_target = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.targets[0].speed.retries = 9  # type: ignore[misc]
    first = plan.to_dict()
    first["targets"][0]["notes"].append("mine")
    first["body"]["json"]["model"] = "mine"
    again = plan.to_dict()
    assert again["targets"][0]["notes"] == list(plan.targets[0].notes)
    assert isinstance(plan.body, PlanBody) and plan.body.json["model"] == "gpt-4o-mini"
    assert again["body"]["json"]["model"] == "gpt-4o-mini"


def test_the_json_shape_of_a_plan(good: RoutingGraph) -> None:
    plan = build_plan(good, _req("x", metadata={"tier": "free"}))
    d = plan.to_dict()
    assert list(d) == [
        "request",
        "route",
        "deadline",
        "worst_case",
        "worst_case_exceeds_deadline",
        "needed_tokens",
        "limits",
        "tree",
        "targets",
        "cache",
        "first_target",
        "body",
    ]
    assert d["request"] == {"model": "x", "metadata": ["tier"], "stream": False}
    assert list(d["route"]) == ["index", "match", "where", "why", "to"]
    assert list(d["targets"][0]) == [
        "target",
        "provider",
        "kind",
        "model",
        "base_url",
        "speed",
        "retry",
        "breaker",
        "price",
        "notes",
        "estimate",
        "context",
        "ruled_out",
    ]
    assert list(d["cache"]) == ["cacheable", "reason"] and list(d["body"]) == ["url", "headers", "json"]
    # a member shows what its group's strategy adds (weighted: weight and share) after its own
    group, leaf = d["tree"]["members"]
    assert list(group)[:5] == ["group", "strategy", "order", "max_attempts", "members"]
    assert list(group)[-2:] == ["weight", "share"]
    assert list(leaf) == ["target", "model", "circuit", "weight", "share"]
    tree = plan.tree
    assert isinstance(tree, PlanTreeGroup) and isinstance(tree.members[1], PlanTreeTarget)
    assert tree.members[1].extra == {"weight": 1.0, "share": 0.25}


def test_weighted_plan_shows_weights_not_a_draw(good: RoutingGraph) -> None:
    plan = build_plan(good, _req("x", metadata={"tier": "free"}))
    tree = plan.to_dict()["tree"]
    assert tree["strategy"] == "weighted" and "random draw by weight" in tree["order"]
    assert [(m.get("group") or m.get("target"), m["weight"], m["share"]) for m in tree["members"]] == [
        ("chat", 3.0, 0.75),
        ("local/llama3.2", 1.0, 0.25),
    ]
    text = plan.text()
    assert "weight 3 (75%)" in text and "weight 1 (25%)" in text


@pytest.mark.parametrize(
    "strategy, words",
    [
        ("round_robin", "rotating"),
        ("least_latency", "fastest"),
        ("hedged", "hedge_after"),
    ],
)
def test_other_strategies_show_their_policy(cfg: Any, strategy: str, words: str) -> None:
    text = cfg.replace(
        "    strategy: priority\n",
        f"    strategy: {strategy}\n" + ("    hedge_after: 300ms\n" if strategy == "hedged" else ""),
    )
    d = build_plan(cfg.compile(text), _req("chat")).to_dict()
    assert d["tree"]["strategy"] == strategy and words in d["tree"]["order"]
    if strategy == "hedged":
        assert d["tree"]["hedge_after"] == "300ms"


def test_worst_case_over_deadline_is_flagged(cfg: Any) -> None:
    g = cfg.compile(cfg.replace("    deadline: 7m\n", "    deadline: 5m\n"))
    plan = build_plan(g, _req("x", metadata={"tier": "free"}))
    assert plan.to_dict()["worst_case_exceeds_deadline"] is True
    assert "WARNING: worst case exceeds the deadline" in plan.text()


# -- open circuits ----------------------------------------------------------------------------


def test_open_circuit_skips_the_first_target(good: RoutingGraph) -> None:
    d = build_plan(good, _req("chat"), open_circuits={"openai/gpt-4o-mini"}).to_dict()
    assert d["first_target"] == "claude/claude-3-5-haiku-latest"
    assert d["body"]["url"] == "https://api.anthropic.com/v1/messages"
    assert d["tree"]["members"][0]["circuit"] == "open"
    assert d["targets"][0]["breaker"]["state"] == "open"
    text = build_plan(good, _req("chat"), open_circuits={"openai/gpt-4o-mini"}).text()
    assert "openai/gpt-4o-mini  [circuit open: skipped]" in text
    assert "request body for claude/claude-3-5-haiku-latest" in text


def test_circuit_keys_follow_the_breaker_scope(good: RoutingGraph) -> None:
    # openai's breaker is per model: the provider key alone does not open it
    assert (
        build_plan(good, _req("chat"), open_circuits={"openai"}).to_dict()["first_target"]
        == "openai/gpt-4o-mini"
    )
    # claude's breaker is per provider
    d = build_plan(good, _req("chat"), open_circuits={"openai/gpt-4o-mini", "claude"}).to_dict()
    assert d["first_target"] is None and d["body"] is None


def test_all_circuits_open_says_so(good: RoutingGraph) -> None:
    text = build_plan(good, _req("chat"), open_circuits={"openai/gpt-4o-mini", "claude"}).text()
    assert "request body for (no target: all circuits open)" in text


# -- cache decision ---------------------------------------------------------------------------

ON = CacheConfig("memory", 3600.0, 600.0, 0.1)


@pytest.mark.parametrize(
    "cache, request_, cacheable, reason",
    [
        (CacheConfig(), {"temperature": 0}, False, "response caching is off"),
        (ON, {}, False, "the request sets no temperature"),
        (ON, {"temperature": 0.5}, False, "temperature 0.5 is above max_temperature 0.1"),
        (ON, {"temperature": 0.1}, True, "temperature 0.1 <= max_temperature 0.1; cached for 10m"),
        (ON, {"temperature": 0}, True, "temperature 0 <= max_temperature 0.1"),
        (ON, {"temperature": 0, "stream": True}, False, "streaming requests are not cached"),
        (ON, {"temperature": 0, "metadata": {"cache": False}}, False, "cache: false"),
        (ON, {"temperature": 0, "metadata": {"cache": "refresh"}}, True, "refresh"),
    ],
)
def test_cache_decision(cache: CacheConfig, request_: dict[str, Any], cacheable: bool, reason: str) -> None:
    ok, why = cache_decision(cache, request_)
    assert ok is cacheable and reason in why


def test_plan_carries_the_cache_decision(good: RoutingGraph) -> None:
    assert build_plan(good, _req("chat", temperature=0)).to_dict()["cache"]["cacheable"] is True
    d = build_plan(good, _req("chat")).to_dict()
    assert d["cache"] == {"cacheable": False, "reason": "the request sets no temperature"}


# -- body -------------------------------------------------------------------------------------


def test_body_is_the_rendered_request_for_the_first_target(good: RoutingGraph) -> None:
    body = build_plan(good, _req("chat", temperature=0.2, max_tokens=7)).to_dict()["body"]
    assert body["url"] == "https://api.openai.com/v1/chat/completions"
    assert body["json"] == {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 7, "messages": HI}
    assert body["headers"]["Authorization"] == "***"
    assert body["headers"]["OpenAI-Organization"] == "***"  # from ${OPENAI_ORG:-...}
    stream = build_plan(good, _req("chat", stream=True)).to_dict()
    assert stream["body"]["json"]["stream"] is True and stream["request"]["stream"] is True


def test_plan_text_snapshot(good: RoutingGraph, snapshot: Any) -> None:
    plans = [
        build_plan(good, _req("chat", temperature=0)).text(),
        build_plan(good, _req("x", metadata={"tier": "free"}), open_circuits={"openai/gpt-4o-mini"}).text(),
    ]
    assert plans == snapshot


def test_plan_is_json_ready_and_stable(good: RoutingGraph) -> None:
    a = build_plan(good, _req("chat", temperature=0)).to_dict()
    b = build_plan(good, _req("chat", temperature=0)).to_dict()
    assert a == b and json.loads(json.dumps(a)) == a


# -- command line -----------------------------------------------------------------------------


@pytest.fixture
def routes_file(cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    for name, value in cfg.env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "routes.yaml"
    path.write_text(cfg.text)
    return path


def test_cli_plan_json(routes_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "plan",
                str(routes_file),
                "--model",
                "x",
                "--metadata",
                "tier=free",
                "--temperature",
                "0",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["route"]["index"] == 1 and d["cache"]["cacheable"] is True
    assert d["tree"]["members"][0]["weight"] == 3.0


def test_cli_plan_text_from_a_request_file(
    routes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    req = tmp_path / "req.json"
    req.write_text(json.dumps(_req("llama3.2", max_tokens=3)))
    assert main(["plan", str(routes_file), "--request", str(req)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("request  model=llama3.2\nroute    #2 [model=llama*] -> local")
    assert '"num_predict": 3' in out or "num_predict" in out


def test_cli_plan_stream(routes_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(routes_file), "-m", "chat", "--stream", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert "request  model=chat stream" in out and "streaming requests are not cached" in out


def test_the_body_of_any_reachable_target(good: RoutingGraph) -> None:
    req = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    plan = build_plan(good, req, target="claude/claude-3-5-haiku-latest")
    assert plan.first_target == "claude/claude-3-5-haiku-latest"
    assert isinstance(plan.body, PlanBody)
    assert plan.body.url.endswith("/messages")
    assert plan.body.json["model"] == "claude-3-5-haiku-latest"
    assert "request body for claude/claude-3-5-haiku-latest" in plan.text()
    with pytest.raises(ValueError, match=r"cannot reach target 'local/llama3\.2'.*openai/gpt-4o-mini"):
        build_plan(good, req, target="local/llama3.2")


def test_a_template_that_cannot_render_the_request_is_shown_not_raised(cfg: Any) -> None:
    # renders the sample request (it has messages), not a request without them
    (cfg.base_dir / "t.json.j2").write_text(
        '{"model": {{ model }}, "x": {% if request.messages %}1{% else %}{{ request.nope }}{% endif %}}'
    )
    graph = cfg.compile(cfg.replace("    speed: quick\n", "    speed: quick\n    template: t.json.j2\n"))
    plan = build_plan(graph, {"model": "chat", "messages": [], "nope": 1})
    assert isinstance(plan.body, PlanBody)
    broken = build_plan(graph, {"model": "chat", "messages": []})
    assert isinstance(broken.body, str)
    assert "cannot render this request" in broken.body and "would fail over" in broken.text()


def test_plan_shows_the_body_of_the_target_asked_for(
    routes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["plan", str(routes_file), "-m", "chat", "--target", "claude/claude-3-5-haiku-latest", "--json"])
        == 0
    )
    body = json.loads(capsys.readouterr().out)["body"]
    assert body["url"].endswith("/messages")
    assert main(["plan", str(routes_file), "-m", "chat", "--target", "nope/x"]) == 2
    assert "cannot reach target 'nope/x'" in capsys.readouterr().err
