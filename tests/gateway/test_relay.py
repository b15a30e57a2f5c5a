"""The gateway's ASGI side driven directly (its ``send`` recorded message by message) over the
fake provider: a stream's frames of one upstream read go out as one write, each read's before
the next is awaited, pings while the first event is awaited and never after, an error after
pings ends the stream in band, and a disconnect cancels even before the watcher starts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
from gwserve import KEYS, Served

PING = b": ping\n\n"


async def _exchange(served: Served, body: dict[str, Any], *, leave: bool = False) -> list[dict[str, Any]]:
    """Every ASGI message the gateway sent for one ``POST /v1/chat/completions`` (``leave``:
    the client disconnects right after its request)."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json"), (b"x-api-key", KEYS["TEAM_KEY"].encode())],
    }
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        if not leave:
            await asyncio.Event().wait()  # (until the gateway stops watching)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await served.gateway(scope, receive, send)
    return sent


def exchange(served: Served, body: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    return served.call(_exchange(served, body, **options))


def stream(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "solo", "stream": True, "messages": [{"role": "user", "content": text}], **extra}


def frames_of(bodies: list[bytes]) -> list[bytes]:
    """The SSE frames of the bodies; every body must hold whole frames."""
    out: list[bytes] = []
    for body in bodies:
        assert body.endswith(b"\n\n"), body
        out += [f + b"\n\n" for f in body.split(b"\n\n")[:-1]]
    return out


def test_the_frames_of_one_read_go_out_as_one_write(served: Served) -> None:
    sent = exchange(
        served,
        stream('a "quoted" ünïcode \\ line\n [[fake: words=12]]', stream_options={"include_usage": True}),
    )
    start, bodies = sent[0], sent[1:]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    frames = frames_of([m["body"] for m in bodies if m["body"]])
    texts = [f for f in frames if b'"content":' in f]
    # 12 text chunks, finish, usage, [DONE] in one upstream write: a write per read, not per
    # frame (usually 2; how the reads split under load is the kernel's, so the bound is loose)
    assert len(texts) >= 12 and len(bodies) < len(texts) // 2
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(f[6:]) for f in frames[:-1]]
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    for i, chunk in enumerate(chunks[: len(texts)]):
        content = chunk["choices"][0]["delta"]["content"]
        delta = {"role": "assistant", "content": content} if i == 0 else {"content": content}
        want = {
            "id": chunks[0]["id"],
            "object": "chat.completion.chunk",
            "created": chunk["created"],
            "model": "solo",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            "usage": None,
        }
        assert texts[i] == b"data: " + orjson.dumps(want) + b"\n\n"  # the templates: byte for byte


def test_each_read_is_written_before_the_next_is_awaited(served: Served) -> None:
    sent = exchange(served, stream("x [[fake: words=3 chunk_delay=40ms]]"))
    writes = [m["body"] for m in sent[1:] if b'"content":' in m["body"]]
    assert len(writes) >= 3  # one write per upstream read: nothing held for the next read
    assert frames_of([m["body"] for m in sent[1:] if m["body"]])[-1] == b"data: [DONE]\n\n"


def test_pings_while_the_first_event_is_awaited_and_not_after(served: Served) -> None:
    sent = exchange(served, stream("hi [[fake: latency=350ms words=3 chunk_delay=120ms]]"))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = [m["body"] for m in sent[1:]]
    first = next(i for i, b in enumerate(bodies) if b.startswith(b"data: "))
    assert first >= 2 and all(b == PING for b in bodies[:first])  # keepalive: 100ms
    assert PING not in b"".join(bodies[first:])
    headers = dict(sent[0]["headers"])  # sent with the first ping: before a target answered
    assert headers[b"x-engine-route"] == b"a/m" and b"x-engine-provider" not in headers


def test_an_error_after_pings_ends_the_stream_in_band(served: Served) -> None:
    sent = exchange(served, stream("x [[fake: latency=250ms 503]]"))
    assert sent[0]["status"] == 200
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[0] == PING and sent[-1]["more_body"] is False
    error = json.loads(bodies[-1].removeprefix(b"data: "))
    assert error["error"]["code"] == "stream_interrupted" and b"[DONE]" not in b"".join(bodies)


def test_an_error_before_any_frame_or_ping_is_a_status(served: Served) -> None:
    sent = exchange(served, stream("x [[fake: 503]]"))
    assert sent[0]["status"] == 502 and dict(sent[0]["headers"])[b"content-type"] == b"application/json"


def test_a_disconnect_before_the_watcher_starts_still_cancels(served: Served) -> None:
    t = time.monotonic()
    plain = exchange(
        served,
        {"model": "solo", "messages": [{"role": "user", "content": "x [[fake: latency=2s]]"}]},
        leave=True,
    )
    streamed = exchange(served, stream("x [[fake: latency=2s]]"), leave=True)
    assert time.monotonic() - t < 1.5  # both cancelled, not answered after the fake's 2 s
    assert plain == []  # (a stream may have sent pings meanwhile: uvicorn drops them)
    assert all(m.get("body") == PING for m in streamed if m["type"] == "http.response.body")
