"""The shipped routes.yaml with ``cache.backend`` switched to a live Redis (a profile in tmp_path: the
ci profile pointed at the test's fake provider, plus the backend): two engines built from it share
the response cache, the circuits and the rate-limit counters, and list models."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from engine.api import Engine
from engine.fake import FakeServer

ROOT = Path(__file__).resolve().parent.parent.parent


def _config(tmp_path: Path, fake: FakeServer, backend: str) -> Path:
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    (tmp_path / "profiles").mkdir()
    ci = (ROOT / "profiles" / "ci.yaml").read_text(encoding="utf-8")
    assert "http://127.0.0.1:8400" in ci
    overlay = ci.replace("http://127.0.0.1:8400", fake.url)
    overlay += f"cache:\n  backend: {backend}\n"
    (tmp_path / "profiles" / "shared.yaml").write_text(overlay, encoding="utf-8")
    return tmp_path / "routes.yaml"


def _chat_calls(fake: FakeServer) -> int:
    return sum(
        n
        for path, n in fake.stats(log=False)["paths"].items()
        if path.endswith(("/chat/completions", "/messages"))
    )


async def test_the_shipped_config_shares_state_on_redis(
    tmp_path: Path, redis_url: str, upstream: FakeServer
) -> None:
    path = _config(tmp_path, upstream, redis_url)
    ask = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi from the shipped config"}],
        "temperature": 0,
        "max_tokens": 32,
    }
    async with (
        Engine.from_file(path, profile="shared") as one,
        Engine.from_file(path, profile="shared") as two,
    ):
        assert one.graph.cache.backend == redis_url
        first = await one.route(ask)
        assert (first.provider, first.model, first.cached) == ("openai", "gpt-4o-mini", False)
        second = await two.route(ask)
        assert second.cached and second.text == first.text
        assert _chat_calls(upstream) == 1
        assert one.plan(ask).cache.cacheable is True

        # openai's circuit (ci: 3 failures) opened by one is skipped by two
        upstream.program("openai", ["503"] * 3)
        hot = {**ask, "temperature": 1}
        failed_over = await one.route(hot)
        assert failed_over.provider == "anthropic"
        assert [a.outcome for a in failed_over.attempts] == ["retry", "retry", "failover", "ok"]
        skipped = await two.route(hot)
        assert skipped.provider == "anthropic"
        assert (skipped.attempts[0].target, skipped.attempts[0].error) == (
            "openai/gpt-4o-mini",
            "circuit open",
        )
        assert two.health()["openai"].circuit == "open"

        listed = await two.list_models_many(["openai", "anthropic", "gemini", "local"])
        assert all(not isinstance(v, Exception) for v in listed.values()), listed

    client = redis.Redis.from_url(redis_url)
    try:
        keys = {k.decode() for k in client.keys("*")}
    finally:
        client.close()
    assert any(k.startswith("engine:resp") for k in keys)  # the response
    assert any(k.startswith("engine:models") for k in keys)  # the listings
    assert any(k.startswith("engine:rl:{openai@") for k in keys)  # openai's rpm/tpm window
    assert any(k.startswith("engine:cbr:c:openai@") for k in keys)  # the open circuit
    assert "engine:cbr:v" in keys  # the circuits' version
    assert all(k.startswith("engine:") for k in keys)  # every key in the namespace
