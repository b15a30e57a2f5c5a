"""Hostile clients and upstreams against one shared gateway (``served``): requests uvicorn cannot
parse answered as JSON in the path's dialect, every answer with its ``x-request-id``, bad bodies
and fields refused with 400 in the endpoint's dialect, a provider's refusal with its own message,
and no key from routes.yaml or the client's in any answer."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from gwserve import KEYS, Served

from engine.gateway import http

TEAM = KEYS["TEAM_KEY"]
SECRETS = [*KEYS.values(), "key-a-123456", "key-b-123456", "key-anth-1"]
CHAT, MESSAGES, COUNT = "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"
PATHS = [CHAT, MESSAGES, COUNT]


def raw(served: Served, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is; the status, headers and body of the answer (the server closes)."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:]))
    return int(lines[0].split()[1]), headers, body


def post(served: Served, path: str, body: Any, **headers: str) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"authorization": f"Bearer {TEAM}", "content-type": "application/json", **headers}
    return httpx.post(served.url + path, content=data, headers=sent, timeout=5)


def assert_error(status: int, body: bytes, path: str) -> None:
    """``body`` is the dialect's error shape for ``path``, and leaks no key."""
    assert not any(s.encode() in body for s in SECRETS)
    data = json.loads(body)
    if path.startswith("/v1/messages"):
        assert data["type"] == "error" and set(data["error"]) == {"type", "message"}
    else:
        assert set(data["error"]) == {"message", "type", "param", "code"}
    assert status != 500


def message(path: str, text: str = "hi", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "solo", "messages": [{"role": "user", "content": text}], **fields}
    if path == MESSAGES:
        body.setdefault("max_tokens", 16)
    return body


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: abc\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: 99999999999999999999999\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"x-request-id: a\rb\r\n",
        b"anthropic-version: 2023-06-01\x00\r\n",
    ],
)
def test_a_request_uvicorn_cannot_parse_is_a_json_error(served: Served, path: str, framing: bytes) -> None:
    data = b"POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n{}" % (path.encode(), framing)
    status, headers, body = raw(served, data)
    assert status == 400 and headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req-")
    assert_error(status, body, path)


@pytest.mark.parametrize("path", PATHS)
def test_a_body_that_never_arrives_whole_is_a_408(
    served: Served, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 0.1)
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n" % (path.encode(), TEAM.encode())
    status, headers, body = raw(served, head + b'Content-Length: 500\r\n\r\n{"model":')
    assert status == 408 and headers["connection"] == "close"
    assert_error(status, body, path)


def test_an_unknown_method_or_garbage_line_is_a_json_error(served: Served) -> None:
    tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"  # a TLS hello: no request line at all
    for line in (b"BREW /v1/chat/completions HTTP/1.1", b"HELLO", b"PRI * HTTP/2.0\r\n\r\nSM", tls):
        status, headers, body = raw(served, line + b"\r\n\r\n")
        assert status == 400 and "x-request-id" in headers
        assert_error(status, body, CHAT)


def test_metrics_carry_the_request_id(served: Served) -> None:
    r = httpx.get(served.url + "/metrics", headers={"x-api-key": TEAM, "x-request-id": "probe-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "probe-1"


def test_a_request_id_is_echoed_byte_for_byte(served: Served) -> None:
    r = httpx.post(
        served.url + CHAT,
        json=message(CHAT),
        headers={"x-api-key": TEAM, "x-request-id": b"caf\xe9-1"},  # type: ignore[dict-item]
    )
    assert r.status_code == 200 and (b"x-request-id", b"caf\xe9-1") in r.headers.raw


def test_models_errors_are_anthropic_shaped_for_an_anthropic_client(served: Served) -> None:
    r = httpx.get(served.url + "/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    assert "error" in httpx.get(served.url + "/v1/models").json()  # (OpenAI's shape without it)


def test_a_non_admin_key_on_an_admin_endpoint_is_not_a_model_refusal(served: Served) -> None:
    r = httpx.get(served.url + "/health/providers", headers={"x-api-key": TEAM})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error" and r.json()["error"]["code"] is None


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_providers_refusal_carries_its_own_message(served: Served, path: str) -> None:
    r = post(served, path, message(path, "hi [[fake: too_long]]"))
    assert r.status_code == 400
    assert_error(400, r.content, path)
    text = r.json()["error"]["message"]
    assert "a/m answered 400" in text and "maximum context length" in text


@pytest.mark.parametrize("path", PATHS)
def test_an_overlong_model_is_a_400_whatever_the_key_may_use(served: Served, path: str) -> None:
    r = post(served, path, {**message(path), "model": "x" * 5000})
    assert r.status_code == 400 and len(r.content) < 400
    assert "at most 256" in r.json()["error"]["message"]


@pytest.mark.parametrize("budget", [-5, 0, 1023])
@pytest.mark.parametrize("path", [MESSAGES, COUNT])
def test_a_thinking_budget_below_anthropics_minimum_is_refused(
    served: Served, path: str, budget: int
) -> None:
    r = post(served, path, message(path, thinking={"type": "enabled", "budget_tokens": budget}))
    assert r.status_code == 400 and "thinking.budget_tokens" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        b"42",
        b"null",
        b"[" * 5000 + b"]" * 5000,
        b'{"model":"solo","messages":[{"role":"user","content":"\\ud800"}]}',
        b'{"model":"solo","messages":[{"role":"user","content":"\xff\xfe"}]}',
        b'{"model":"solo","temperature":NaN,"messages":[]}',
        b'{"model":"solo","max_tokens":1' + b"0" * 400 + b',"messages":[]}',
    ],
)
def test_a_body_that_is_no_request_is_a_400_in_the_dialect(served: Served, path: str, body: bytes) -> None:
    r = post(served, path, body)
    assert r.status_code == 400
    assert_error(400, r.content, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "fields",
    [
        {"messages": "hi"},
        {"messages": [1]},
        {"messages": [{"role": "user", "content": 5}]},
        {"tools": "x"},
        {"max_tokens": -1},
        {"max_tokens": "5"},
        {"max_tokens": True},
        {"temperature": "hot"},
        {"stream": "yes"},
        {"metadata": [1]},
        {"model": ""},
        {"model": "../etc"},
        {"model": "a b"},
        {"model": "a?b"},
        {"model": "modèle"},
    ],
)
def test_a_field_of_the_wrong_type_is_a_400(served: Served, path: str, fields: dict[str, Any]) -> None:
    r = post(served, path, {**message(path), **fields})
    assert r.status_code == 400
    assert_error(400, r.content, path)


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.parametrize("fault", ["reset", "truncate", "malformed", "die_after=2", "stream_error"])
def test_a_broken_upstream_stream_never_ends_clean(served: Served, path: str, fault: str) -> None:
    r = post(served, path, message(path, f"hello there friend [[fake: {fault}]]", stream=True))
    if r.status_code != 200:
        assert r.status_code == 502
        assert_error(r.status_code, r.content, path)
        return
    text = r.text
    assert not any(s in text for s in SECRETS)
    if path == CHAT:
        assert "data: [DONE]" not in text and 'data: {"error"' in text
    else:
        assert "event: message_stop" not in text and "event: error" in text


def test_head_on_the_health_checks_answers_like_get_without_a_body(served: Served) -> None:
    """Load balancers probe with HEAD as well as GET: the GET's status and headers, no body."""
    for path, status in (("/health", 200), ("/health/ready", 200), ("/v1/models", 401)):
        got, headers, body = raw(
            served, b"HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode()
        )
        assert got == status and "x-request-id" in headers and body == b""
        assert int(headers["content-length"]) > 0  # (the GET's length: what it would send)
    wrong = httpx.put(served.url + "/health")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", [MESSAGES, COUNT])
def test_no_messages_is_anthropics_400(served: Served, path: str) -> None:
    r = post(
        served,
        path,
        {"model": "solo", "max_tokens": 16, "messages": []},
        **{"anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400 and "at least one message is required" in r.json()["error"]["message"]
    assert_error(400, r.content, path)


def test_a_request_head_past_its_limit_is_a_431_as_it_arrives(served: Served) -> None:
    """httptools would buffer a header of any size: the head is refused once past MAX_HEAD,
    while the client is still sending it (it never ends here), in the path's dialect."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-big: ")
        out = b""
        with pytest.raises(OSError):  # refused and closed while the header still streams in
            for _ in range(200):
                s.sendall(b"a" * 16384)
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"x-request-id: " in head
    assert_error(431, body, MESSAGES)


def test_a_large_body_in_the_reads_of_its_head_is_no_431(served: Served) -> None:
    """Only the head counts: a body far larger than MAX_HEAD, sent with its headers in one go,
    meets the body's own limit (max_body, 20 kB here), not the head's."""
    r = post(served, CHAT, message(CHAT, "x" * 300_000))
    assert r.status_code == 413 and "body is larger" in r.json()["error"]["message"]
