"""Running the fake: on a background thread, as a subprocess, and the refused-port helper."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from engine.fake import FakeServer, main, refused_port, serve_in_thread

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": "Bearer k"}


def test_serve_in_thread_for_sync_code() -> None:
    with serve_in_thread() as srv:
        r = httpx.post(srv.base_url("openai") + "/chat/completions", json=BODY, headers=AUTH)
        assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
        srv.program(faults=["503"])  # programmed from this thread, served on the other
        assert httpx.post(srv.url + "/v1/chat/completions", json=BODY, headers=AUTH).status_code == 503
        assert srv.stats()["requests"] == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/v1/models", headers=AUTH)


def test_server_as_a_sync_context_manager_with_uvloop() -> None:
    pytest.importorskip("uvloop")
    srv = FakeServer().run_in_thread(use_uvloop=True)
    try:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.post(srv.url + "/v1/chat/completions", json=BODY, headers={**AUTH, "x-fake": "reset"})
        assert httpx.get(srv.url + "/api/tags").status_code == 200
    finally:
        srv.stop_thread()
    with FakeServer() as again:
        assert httpx.get(again.url + "/_fake/health").json() == {"ok": True}


def test_thread_start_failure_is_raised() -> None:
    with serve_in_thread() as srv, pytest.raises(OSError):
        FakeServer(port=srv.port).run_in_thread()


def test_refused_port_refuses() -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{refused_port()}/v1/models", timeout=2)


def test_main_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "not-a-port"]) == 2
    assert "usage" in capsys.readouterr().err


def test_subprocess_prints_its_url_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.fake", "--port", "0", "--require-key", "sekret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"fake provider listening on (http://127\.0\.0\.1:(\d+))", line)
        assert m, line
        url = m.group(1) + "/v1/chat/completions"
        assert (
            httpx.post(url, json=BODY, headers={"Authorization": "Bearer no"}, timeout=5).status_code == 401
        )
        assert (
            httpx.post(url, json=BODY, headers={"Authorization": "Bearer sekret"}, timeout=5).status_code
            == 200
        )
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
