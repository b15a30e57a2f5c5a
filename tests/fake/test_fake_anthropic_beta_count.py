"""The fake's Anthropic wire, as strict as the real API about what the gateway's dialect passes
through: the anthropic-beta header (flags of Anthropic's form only, nothing echoed but the bad
flag, cut short), metadata (user_id only), and POST /v1/messages/count_tokens (its own body:
no max_tokens, nothing a count does not take)."""

from __future__ import annotations

import httpx
import pytest

from engine.fake import FakeServer

HEADERS = {"x-api-key": "sk-ant-secret-123", "anthropic-version": "2023-06-01"}
BODY = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "a b c"}],
}


def post(fake: FakeServer, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{fake.url}/v1{path}", json=body, headers={**HEADERS, **headers}, timeout=10)


@pytest.mark.parametrize(
    "beta", ["prompt-caching-2024-07-31", "claude-code-20250219", "a-2025-01-01, b-2025-02-02"]
)
def test_well_formed_beta_flags_are_taken_and_logged(fake: FakeServer, beta: str) -> None:
    assert post(fake, "/messages", BODY, **{"anthropic-beta": beta}).status_code == 200
    assert fake.requests[-1]["protocol"] == {"anthropic-beta": beta, "anthropic-version": "2023-06-01"}
    assert "sk-ant-secret-123" not in str(fake.requests[-1])  # the key's value is never logged


@pytest.mark.parametrize("beta", ["nodate", "Caps-2024-01-01", "ok-2024-01-01,", "x" * 90 + "-2024-01-01!"])
def test_malformed_beta_flags_are_refused(fake: FakeServer, beta: str) -> None:
    r = post(fake, "/messages", BODY, **{"anthropic-beta": beta})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "anthropic-beta" in message and "sk-ant" not in message and len(message) < 300


def test_metadata_holds_user_id_only(fake: FakeServer) -> None:
    assert post(fake, "/messages", {**BODY, "metadata": {"user_id": "u-1"}}).status_code == 200
    r = post(fake, "/messages", {**BODY, "metadata": {"team": "a"}})
    assert (
        r.status_code == 400
        and r.json()["error"]["message"] == "metadata.team: Extra inputs are not permitted"
    )


def test_count_tokens_counts_the_prompt(fake: FakeServer) -> None:
    body = {"model": BODY["model"], "messages": BODY["messages"], "system": "be brief"}
    r = post(fake, "/messages/count_tokens", body)
    assert r.status_code == 200 and r.json() == {"input_tokens": 5}
    assert fake.requests[-1]["path"] == "/v1/messages/count_tokens"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (BODY, "max_tokens: Extra inputs are not permitted"),
        ({"model": "claude-3-5-haiku-latest"}, "messages: Field required"),
        ({"messages": BODY["messages"]}, "model: Field required"),
        (
            {**{k: BODY[k] for k in ("model", "messages")}, "stream": True},
            "stream: Extra inputs are not permitted",
        ),
    ],
)
def test_count_tokens_refuses_what_the_count_endpoint_refuses(
    fake: FakeServer, body: object, message: str
) -> None:
    r = post(fake, "/messages/count_tokens", body)
    assert r.status_code == 400 and r.json()["error"]["message"] == message


def test_count_tokens_needs_the_key_and_version(fake: FakeServer) -> None:
    body = {"model": BODY["model"], "messages": BODY["messages"]}
    r = httpx.post(
        f"{fake.url}/v1/messages/count_tokens", json=body, headers={"anthropic-version": "2023-06-01"}
    )
    assert r.status_code == 401
    r = httpx.post(f"{fake.url}/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
