"""Values from the environment are secrets: they never appear in describe(), plans (text or JSON),
Mermaid, ConfigError messages, warnings, command output or any repr."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.errors import ConfigError
from engine.graph import RoutingGraph
from engine.mermaid import to_mermaid
from engine.plan import build_plan
from engine.values import Secret

SECRETS = {
    "OPENAI_API_KEY": "sk-LEAK-openai-0001",
    "ANTHROPIC_API_KEY": "sk-LEAK-anthropic-0002",
    "OPENAI_ORG": "org-LEAK-0003",
    "OPENAI_BASE": "https://LEAK-proxy.example.com/v1",
    "REDIS_URL": "redis://user:LEAK-redis-pw-0004@cache.example.com:6379/0",
    "EXTRA_TOKEN": "tok-LEAK-0005",
}
MARK = "LEAK"


def _secret_config(cfg: Any) -> str:
    text = cfg.replace("    base_url: https://api.openai.com/v1\n", "    base_url: ${OPENAI_BASE}\n")
    text = cfg.replace(
        '{OpenAI-Organization: "${OPENAI_ORG:-org-default}"}',
        '{OpenAI-Organization: "${OPENAI_ORG:-org-default}", X-Token: "Bearer ${EXTRA_TOKEN}"}',
        text,
    )
    return cfg.replace("  backend: memory\n", "  backend: ${REDIS_URL}\n", text)


@pytest.fixture
def secret_graph(cfg: Any) -> RoutingGraph:
    return cfg.compile(_secret_config(cfg), env=SECRETS)


REQUESTS = [
    {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
    {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    {"model": "x", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tier": "free"}},
    {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "other", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
]


def test_secrets_are_secret_values(secret_graph: RoutingGraph) -> None:
    p = secret_graph.providers["openai"]
    assert isinstance(p.api_key, Secret) and p.api_key.reveal() == SECRETS["OPENAI_API_KEY"]
    assert isinstance(p.base_url, Secret)
    assert isinstance(p.headers["X-Token"], Secret)
    assert p.headers["X-Token"].reveal() == "Bearer tok-LEAK-0005"  # type: ignore[union-attr]


def test_describe_never_shows_a_secret(secret_graph: RoutingGraph) -> None:
    text = secret_graph.describe()
    assert MARK not in text
    assert "api_key=***" in text and "base_url=***" in text and "header X-Token: ***" in text


def test_plans_never_show_a_secret(secret_graph: RoutingGraph) -> None:
    for request in REQUESTS:
        plan = build_plan(secret_graph, request)
        assert MARK not in plan.text()
        assert MARK not in json.dumps(plan.to_dict())
        assert MARK not in repr(plan) and MARK not in str(plan)
    plan = build_plan(secret_graph, REQUESTS[0])
    assert plan.to_dict()["body"]["url"].startswith("***")


def test_plan_with_open_circuits_never_shows_a_secret(secret_graph: RoutingGraph) -> None:
    plan = build_plan(secret_graph, REQUESTS[0], open_circuits={"openai/gpt-4o-mini", "claude"})
    assert MARK not in plan.text()


def test_mermaid_never_shows_a_secret(secret_graph: RoutingGraph) -> None:
    assert MARK not in to_mermaid(secret_graph)


def _all_objects(root: Any) -> list[Any]:
    import dataclasses
    from collections.abc import Mapping

    out, stack, seen = [], [root], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        elif isinstance(obj, Mapping):
            stack += list(obj.values())
        elif isinstance(obj, tuple | list | frozenset):
            stack += list(obj)
    return out


def test_no_repr_or_str_in_the_graph_shows_a_secret(secret_graph: RoutingGraph) -> None:
    objects = _all_objects(secret_graph)
    assert len(objects) > 50
    for obj in objects:
        if isinstance(obj, str):  # a plain field the runtime reads (the cache URL); not a repr
            continue
        assert MARK not in repr(obj), type(obj)
        assert MARK not in str(obj), type(obj)


def test_secret_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


def test_warnings_never_show_a_secret(cfg: Any) -> None:
    text = _secret_config(cfg).replace("    deadline: 7m\n", "    deadline: 5m\n")
    g = cfg.compile(text, env={k: v for k, v in SECRETS.items() if k != "OPENAI_API_KEY"})
    assert len(g.warnings) == 2
    assert all(MARK not in str(w) and MARK not in repr(w) for w in g.warnings)


def test_config_errors_never_show_a_secret(cfg: Any) -> None:
    text = _secret_config(cfg)
    text = cfg.replace("    speed: quick\n", "    speed: ${SPEED}\n", text)
    text = cfg.replace("retries: 1, backoff", 'retries: "${RETRIES}", backoff', text)
    text = cfg.replace("    kind: anthropic\n", "    kind: ${KIND}\n", text)
    text = cfg.replace("    deadline: 7m\n", "    deadline: ${DEADLINE}\n", text)
    text = cfg.replace("    base_url: ${OPENAI_BASE}\n", "    base_url: ${BAD_URL}\n", text)
    env = {
        **SECRETS,
        "SPEED": "LEAK-speed",
        "RETRIES": "LEAK-retries",
        "KIND": "LEAK-kind",
        "DEADLINE": "LEAK-deadline",
        "BAD_URL": "ftp://LEAK-url",
    }
    with pytest.raises(ConfigError) as info:
        cfg.compile(text, env=env)
    err = info.value
    assert len(err.errors) >= 4
    assert MARK not in str(err) and MARK not in repr(err)
    for p in err.problems:
        assert MARK not in p.format() and MARK not in repr(p)


def test_secrets_only_in_secret_capable_fields(cfg: Any) -> None:
    text = cfg.replace("    speed: quick\n", "    speed: ${S}\n")
    with pytest.raises(ConfigError) as info:
        cfg.compile(text, env={**SECRETS, "S": "h"})
    (p,) = info.value.errors
    assert p.message == "an environment value (${...}) is a secret and cannot be used here"
    assert p.path.endswith(".speed") and "api_key, base_url, headers" in p.hint


def test_cli_output_never_shows_a_secret(
    cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "routes.yaml"
    path.write_text(_secret_config(cfg))
    req = tmp_path / "r.json"
    req.write_text(json.dumps(REQUESTS[2]))
    runs = [
        ["check", str(path)],
        ["plan", str(path), "--model", "chat"],
        ["plan", str(path), "--model", "chat", "--json"],
        ["plan", str(path), "-r", str(req)],
        ["graph", str(path)],
    ]
    for argv in runs:
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert MARK not in out and MARK not in err, argv
    path.write_text(_secret_config(cfg).replace("    speed: quick\n", "    speed: ${OPENAI_ORG}\n"))
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "an environment value (${...}) is a secret" in err and MARK not in out + err


@pytest.mark.parametrize(
    ("backend", "env", "shown"),
    [
        (
            "redis://cache.example.com:6379/0?password=${PW}",
            {"PW": "LEAK-pw-0006"},
            "redis://cache.example.com:6379/0?password=***",
        ),
        ("${REDIS_URL}", {"REDIS_URL": "redis://LEAK-host.example.com:6379/0"}, "***"),
        ("redis://${REDIS_HOST}:6379/0", {"REDIS_HOST": "LEAK-host.internal"}, "redis://***:6379/0"),
    ],
)
def test_a_backend_url_keeps_its_secrets(cfg: Any, backend: str, env: dict[str, str], shown: str) -> None:
    graph = cfg.compile(cfg.replace("  backend: memory\n", f'  backend: "{backend}"\n'), env=env)
    assert isinstance(graph.cache.backend, Secret)
    assert MARK in graph.cache.url  # the state layer opens it, nothing else shows it
    assert f"cache backend={shown} " in graph.describe()
    for text in (graph.describe(), repr(graph.cache), str(graph.cache), repr(graph)):
        assert MARK not in text
