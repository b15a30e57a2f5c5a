"""``engine serve`` as a real process: located problems and exit 1 on a bad config, the refusal
of an open non-loopback listen, SIGTERM draining a stream in flight, SIGHUP and /admin/reload
with a broken file (the old graph keeps serving), admin endpoints, two workers on one Redis."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from gwserve import KEYS, Spawned

from engine.fake import FakeServer

CONFIG = """\
version: 1
defaults: {deadline: 10s}
cache: {backend: "{backend}"}
providers:
  a: {kind: openai, base_url: "{fake}/a/v1", api_key: key-a-123456, models: {m: {}}}
routes:
  - match: {model: chat}
    to: a/m
server:
  keys:
    team: {key: "${TEAM_KEY}", limits: {rpm: 3}}
    ops: {key: "${OPS_KEY}", admin: true}
"""

Spawn = Callable[..., Spawned]


def write(tmp_path: Path, fake: FakeServer, text: str = CONFIG, backend: str = "memory") -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text.replace("{fake}", fake.url).replace("{backend}", backend))
    return path


def chat(url: str, key: str = KEYS["TEAM_KEY"], model: str = "chat") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=10)


def test_a_bad_config_exits_1_with_located_problems(tmp_path: Path, fake: FakeServer, spawn: Spawn) -> None:
    write(tmp_path, fake, CONFIG.replace("to: a/m", "to: a/nope"))
    s = spawn(["routes.yaml", "--listen", "127.0.0.1:0"], {**KEYS})
    assert s.wait() == 1 and s.ready == ""
    assert re.search(r"routes\.yaml:\d+:\d+: error: .*nope", s.stderr())


def test_an_open_non_loopback_listen_refuses_to_start(tmp_path: Path, fake: FakeServer, spawn: Spawn) -> None:
    write(tmp_path, fake, CONFIG.split("server:")[0])
    s = spawn(["routes.yaml", "--listen", "0.0.0.0:0"])
    assert s.wait() == 1
    assert "refusing to listen on 0.0.0.0" in s.stderr() and "auth: none" in s.stderr()


def test_sigterm_lets_a_stream_in_flight_finish_and_exits_0(
    tmp_path: Path, fake: FakeServer, spawn: Spawn
) -> None:
    write(tmp_path, fake)
    s = spawn(["--listen", "127.0.0.1:0"], {**KEYS})
    assert s.ready.startswith("engine: serving routes.yaml on http://127.0.0.1:")
    c = openai.OpenAI(base_url=s.url + "/v1", api_key=KEYS["OPS_KEY"], max_retries=0, timeout=20)
    stream = c.chat.completions.create(
        model="chat",
        stream=True,
        messages=[{"role": "user", "content": "x [[fake: words=12 chunk_delay=80ms]]"}],
    )
    chunks = iter(stream)
    first = next(chunks)
    s.signal(signal.SIGTERM)
    rest = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
    assert (first.choices[0].delta.content or "") + "".join(rest)  # the whole answer arrived
    assert len(rest) >= 12
    assert s.wait() == 0
    with pytest.raises(httpx.ConnectError):
        chat(s.url)
    c.close()


def test_sighup_and_admin_reload_with_a_broken_file_keep_the_old_graph(
    tmp_path: Path, fake: FakeServer, spawn: Spawn
) -> None:
    path = write(tmp_path, fake)
    s = spawn(["routes.yaml", "--listen", "127.0.0.1:0"], {**KEYS})
    ops = {"authorization": f"Bearer {KEYS['OPS_KEY']}"}
    good = path.read_text()
    path.write_text(good.replace("to: a/m", "to: a/nope"))
    s.signal(signal.SIGHUP)
    assert "reload refused" in s.wait_for("reload refused")
    assert chat(s.url, KEYS["OPS_KEY"]).status_code == 200  # the old graph
    refused = httpx.post(s.url + "/admin/reload", headers=ops)
    assert refused.status_code == 422 and any("nope" in p for p in refused.json()["problems"])
    assert httpx.post(s.url + "/admin/reload", headers={"x-api-key": KEYS["TEAM_KEY"]}).status_code == 403
    path.write_text(good.replace("model: chat", "model: chat2"))
    s.signal(signal.SIGHUP)
    s.wait_for("reloaded")
    assert chat(s.url, KEYS["OPS_KEY"], "chat2").status_code == 200
    assert chat(s.url, KEYS["OPS_KEY"], "chat").status_code == 404
    health = httpx.get(s.url + "/health/providers", headers=ops).json()["providers"]
    assert health["a"]["ok"] >= 1 and health["a"]["circuit"] == "closed"
    assert httpx.get(s.url + "/health/providers").status_code == 401
    assert (
        httpx.get(s.url + "/health").status_code == 200
        and httpx.get(s.url + "/health/ready").status_code == 200
    )
    metrics = httpx.get(s.url + "/metrics", headers=ops).text
    assert "gen_ai_client_operation_duration_seconds" in metrics


def test_two_workers_share_a_keys_rpm_through_redis(
    tmp_path: Path, fake: FakeServer, spawn: Spawn, redis_url: str
) -> None:
    write(tmp_path, fake, backend=redis_url)
    s = spawn(["routes.yaml", "--listen", "127.0.0.1:0", "--workers", "2"], {**KEYS})
    assert s.ready.endswith("(2 workers)")
    statuses: list[int] = []
    pids: set[str] = set()
    while len(pids) < 2 or len(statuses) < 6:  # fresh connections until both workers answered
        assert len(statuses) < 80, f"one worker took every connection: {pids}"
        r = chat(s.url)
        statuses.append(r.status_code)
        pids.add(r.headers["x-request-id"].split("-")[1])
    assert statuses.count(200) == 3 and set(statuses) == {200, 429}
    answered: set[str] = set()  # the workers that routed a request (the ops key has no limit)
    ok = 3
    while len(answered) < 2:
        assert ok < 80, f"one worker took every connection: {answered}"
        r = chat(s.url, key=KEYS["OPS_KEY"])
        assert r.status_code == 200
        answered.add(r.headers["x-request-id"].split("-")[1])
        ok += 1
    metrics = httpx.get(s.url + "/metrics", headers={"x-api-key": KEYS["OPS_KEY"]}).text
    assert "gen_ai_client_operation_duration_seconds" in metrics
    # /metrics sums over the workers: every routed request counted once, whichever answered
    counted = re.search(r'^engine_requests_total\{outcome="ok",route="[^"]+"\} (\S+)$', metrics, re.M)
    assert counted is not None and float(counted.group(1)) == ok, metrics[:2000]
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


def test_watch_reloads_when_the_file_changes(tmp_path: Path, fake: FakeServer, spawn: Spawn) -> None:
    path = write(tmp_path, fake)
    s = spawn(["routes.yaml", "--listen", "127.0.0.1:0", "--watch"], {**KEYS})
    path.write_text(path.read_text().replace("model: chat", "model: watched"))
    s.wait_for("reloaded")
    assert chat(s.url, KEYS["OPS_KEY"], "watched").status_code == 200
