"""Every response recorded from the real APIs (``../shared/wire-recordings``, third-party data kept
outside the repository: skipped where it is absent) replayed by a loopback upstream of its
provider kind, routed through ``engine serve`` (in-process) and read by the official SDKs in both
client dialects: ``openai`` on ``/v1/chat/completions``, ``anthropic`` on ``/v1/messages``,
streamed where the recording is a stream. What the SDK makes of the gateway's answer agrees
with what the provider's own SDK made of the recorded bytes (each recording's ``meta.json``):
text, tool calls, finish / stop reason in the dialect's words, usage, reasoning (the recording's
own thinking), an in-stream error raised while iterating after the text before it, an error
answer as the SDK's typed exception of the recorded status (with the provider's message, and
none of the gateway's own OpenAI error codes). Answers of this file's own, in the providers'
shapes, pin what runs without the recordings: a provider's refusal, a Gemini 3 call's signature
handed out and back through the OpenAI dialect.

(The engine's parsers against each recording: tests/providers/test_wire_recordings.py; the
Anthropic dialect's event sequence over Anthropic recordings: test_anthropic_recordings.py.)
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, cast

import anthropic
import openai
import pytest
from aiohttp import web
from gwserve import Served

from engine.fake import FakeServer
from engine.gateway.anthropic import ERROR_TYPES

ROOT = Path(
    os.environ.get("ENGINE_WIRE_RECORDINGS")
    or Path(__file__).resolve().parents[3] / "shared" / "wire-recordings"
)
METAS = sorted(ROOT.glob("*/*.meta.json")) if ROOT.is_dir() else []
IDS = [f"{p.parent.name}/{p.name.removesuffix('.meta.json')}" for p in METAS]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
recorded = pytest.mark.skipif(not METAS, reason=f"no wire recordings at {ROOT}")


class Recording(NamedTuple):
    kind: str
    name: str
    meta: dict[str, Any]
    body: bytes

    @property
    def model(self) -> str:
        """The model a client asks for: the route to this recording."""
        return f"{self.kind}.{self.name}"

    @property
    def stream(self) -> bool:
        return bool(self.meta["expect"]["call"] == "stream")


def _load(meta_path: Path) -> Recording:
    meta = json.loads(meta_path.read_text())
    name = meta_path.name.removesuffix(".meta.json")
    body = (meta_path.parent / f"{name}.{meta['body_file_ext']}").read_bytes()
    return Recording(meta_path.parent.name, name, meta, body)


RECORDINGS = {r.model: r for r in map(_load, METAS)}


def _own(kind: str, name: str, status: int, body: dict[str, Any]) -> Recording:
    """An answer of this file's own, in the shape the provider sends (no recording needed)."""
    expect = {"call": "route", "text": None, "tool_calls": [], "usage": None, "finish": None}
    meta = {"mode": "json", "status": status, "content_type": "application/json", "expect": expect}
    return Recording(kind, name, meta, json.dumps(body).encode())


SIGNATURE = "CiQB0e2Kb3own+signature/of=the+call"
SIGNED_CALL = {  # Gemini 3's answer: a functionCall part carrying its thought signature
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_country", "args": {}}, "thoughtSignature": SIGNATURE}
                ],
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 29, "candidatesTokenCount": 12, "totalTokenCount": 41},
}


OWN = {
    r.model: r
    for r in [
        _own(
            "gemini",
            "own-403",
            403,
            {"error": {"code": 403, "message": "No.", "status": "PERMISSION_DENIED"}},
        ),
        _own(
            "openai",
            "own-404",
            404,
            {"error": {"message": "No such model.", "type": "invalid_request_error"}},
        ),
        _own("gemini", "own-signed-call", 200, SIGNED_CALL),
    ]
}
SERVED = {**RECORDINGS, **OWN}
REFUSALS = [m for m, r in OWN.items() if r.meta["status"] != 200]


def config(url: str) -> str:
    """One provider per kind over the upstream, one route per recording (its ``model``)."""
    kinds = sorted({r.kind for r in SERVED.values()})
    bases = {"openai": "/openai/v1", "anthropic": "/anthropic/v1", "gemini": "/gemini", "ollama": "/ollama"}
    lines = [
        "version: 1",
        "defaults: {retry: strict, breaker: none, deadline: 5s}",
        "retry:",
        "  strict: {retry_on: {status: [], errors: []}, failover_on: {status: [], errors: []}}",
        "providers:",
    ]
    for kind in kinds:
        models = {r.name: {} for r in SERVED.values() if r.kind == kind}
        provider = {"kind": kind, "base_url": url + bases[kind], "api_key": f"key-{kind}-1", "models": models}
        lines.append(f"  {kind}: {json.dumps(provider)}")
    lines.append("routes:")
    for r in SERVED.values():
        lines.append(f"  - {json.dumps({'match': {'model': r.model}, 'to': f'{r.kind}/{r.name}'})}")
    return "\n".join(lines) + "\n"


class _At(NamedTuple):
    url: str


class Replay(NamedTuple):
    served: Served
    asked: dict[str, bool]  # model -> whether the engine asked the upstream for a stream
    sent: dict[str, Any]  # model -> the last request body the upstream got for it


def _upstream(asked: dict[str, bool], sent: dict[str, Any]) -> web.Application:
    """Answers ``/{kind}/...`` with the recording the request names (model in the body, or in
    Gemini's path), with its recorded status and content type."""

    async def answer(request: web.Request) -> web.StreamResponse:
        kind, tail = request.match_info["kind"], request.match_info["tail"]
        body = await request.json()
        if kind == "gemini":  # v1beta/models/NAME:streamGenerateContent
            name, _, method = tail.rsplit("/", 1)[-1].partition(":")
            stream = method == "streamGenerateContent"
        else:
            name = body["model"]
            stream = body.get("stream", kind == "ollama") is True
        rec = SERVED[f"{kind}.{name}"]
        asked[rec.model], sent[rec.model] = stream, body
        resp = web.StreamResponse(
            status=rec.meta["status"], headers={"content-type": rec.meta["content_type"]}
        )
        await resp.prepare(request)
        await resp.write(rec.body)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/{kind}/{tail:.*}", answer)
    return app


@pytest.fixture(scope="module")
def replay() -> Iterator[Replay]:
    """The upstream (on the gateway's own loop) and the module's gateway routing to it."""
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    asked: dict[str, bool] = {}
    sent: dict[str, Any] = {}
    served = Served(config(url), cast(FakeServer, _At(url)), {})
    runner = web.AppRunner(_upstream(asked, sent))

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock).start()

    try:
        served.call(start())
        yield Replay(served, asked, sent)
    finally:
        served.call(runner.cleanup())
        served.stop()


# -- what the recording says, beyond its meta ----------------------------------------------------


def _docs(rec: Recording) -> list[dict[str, Any]]:
    """The recorded body's JSON documents: the whole answer, or each SSE data / NDJSON line."""
    if rec.meta["mode"] == "json":
        return [json.loads(rec.body)]
    out = []
    for line in rec.body.decode().splitlines():
        data = line[5:].strip() if line.startswith("data:") else line.strip()
        if data and data != "[DONE]" and not line.startswith((":", "event:")):
            out.append(json.loads(data))
    return out


def _cache(rec: Recording) -> tuple[int, int]:
    """The recorded prompt-cache reads and writes (tokens)."""
    docs = _docs(rec)
    if rec.kind == "anthropic":
        usage: dict[str, Any] = {}
        for doc in docs:
            given = doc.get("usage") or (doc.get("message") or {}).get("usage") or {}
            usage.update((k, v) for k, v in given.items() if v is not None)
        return usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    if rec.kind == "openai":
        usage = next((d["usage"] for d in reversed(docs) if d.get("usage")), {})
        return (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0, 0
    if rec.kind == "gemini":
        usage = next((d["usageMetadata"] for d in reversed(docs) if d.get("usageMetadata")), {})
        return usage.get("cachedContentTokenCount") or 0, 0
    return 0, 0


def _thinking(rec: Recording) -> list[tuple[str, str | None]]:
    """The recorded reasoning: Anthropic's thinking blocks (text, signature); the other kinds'
    thought text as one block (Gemini's ``thought`` parts, Ollama's ``message.thinking``)."""
    docs = _docs(rec)
    if rec.kind == "anthropic":
        if rec.meta["mode"] == "json":
            return [(b["thinking"], b["signature"]) for b in docs[0]["content"] if b["type"] == "thinking"]
        blocks: dict[int, list[Any]] = {}
        for doc in docs:
            if doc.get("type") == "content_block_start" and doc["content_block"]["type"] == "thinking":
                blocks[doc["index"]] = ["", None]
            elif doc.get("type") == "content_block_delta" and doc["index"] in blocks:
                delta = doc["delta"]
                if delta["type"] == "thinking_delta":
                    blocks[doc["index"]][0] += delta["thinking"]
                elif delta["type"] == "signature_delta":
                    blocks[doc["index"]][1] = delta["signature"]
        return [(t, s) for t, s in blocks.values()]
    text = ""
    for doc in docs:
        if rec.kind == "gemini":
            for cand in (doc.get("candidates") or [])[:1]:
                parts = (cand.get("content") or {}).get("parts") or []
                text += "".join(p.get("text", "") for p in parts if p.get("thought"))
        elif rec.kind == "ollama":
            text += (doc.get("message") or {}).get("thinking") or ""
    return [(text, None)] if text else []


def _prompt(rec: Recording) -> int:
    """The whole prompt's size (cached part included, as OpenAI counts it)."""
    read, write = _cache(rec)
    given = int(rec.meta["expect"]["usage"]["input"])
    return given + read + write if rec.kind == "anthropic" else given


def _calls(rec: Recording) -> list[tuple[str, Any]]:
    return [(c["name"], c["arguments"]) for c in rec.meta["expect"]["tool_calls"]]


def _ids(rec: Recording, got: list[str]) -> None:
    """The provider's tool-call ids where it gave any."""
    for want, mine in zip(rec.meta["expect"]["tool_calls"], got, strict=True):
        assert mine
        if want.get("id"):
            assert mine == want["id"]


def _said(rec: Recording) -> str:
    """The message of a recorded error answer (Ollama's ``error`` is the message itself)."""
    error = json.loads(rec.body)["error"]
    return str(error if type(error) is str else error["message"])


def _ask(rec: Recording) -> dict[str, Any]:
    return {"model": rec.model, "messages": [{"role": "user", "content": "hi"}]}


# -- the OpenAI dialect -------------------------------------------------------------------------

OPENAI_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    429: openai.RateLimitError,
}


@pytest.fixture(scope="module")
def oa(replay: Replay) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=replay.served.url + "/v1", api_key="none", max_retries=0, timeout=10
    ) as client:
        yield client


@recorded
@pytest.mark.parametrize("model", list(RECORDINGS), ids=IDS)
def test_openai_sdk_reads_the_replayed_recording(model: str, replay: Replay, oa: openai.OpenAI) -> None:
    rec = RECORDINGS[model]
    expect = rec.meta["expect"]
    error = expect["error"]
    if rec.meta["status"] != 200:
        _openai_refused(rec, replay, oa)
        return
    if rec.stream:
        got = _openai_stream(oa, rec, error)
        if error is not None:
            return
        text, reasoning, calls, finish, usage = got
    else:
        done = oa.chat.completions.create(**_ask(rec))
        (choice,) = done.choices
        msg = choice.message
        text, finish, usage = msg.content or "", choice.finish_reason, done.usage
        reasoning = (msg.model_extra or {}).get("reasoning_content") or ""
        calls = [(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []]  # type: ignore[union-attr]
    assert replay.asked[model] is rec.stream
    assert text == expect["text"]
    assert reasoning == "".join(t for t, _ in _thinking(rec))
    assert [(name, json.loads(args)) for _, name, args in calls] == _calls(rec)
    _ids(rec, [i for i, _, _ in calls])
    assert finish == expect["finish"]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (_prompt(rec), expect["usage"]["output"])
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == _cache(rec)[0]


@pytest.mark.parametrize("model", REFUSALS)
def test_openai_sdk_gets_a_providers_refusal_without_a_gateway_code(
    model: str, replay: Replay, oa: openai.OpenAI
) -> None:
    """A provider's 403 is not the gateway's ``model_not_allowed`` (nor its 404 the gateway's
    ``model_not_found``): the status and the provider's message, no code of the gateway's."""
    _openai_refused(OWN[model], replay, oa)


def test_a_gemini_call_signature_goes_out_and_comes_back_through_the_openai_dialect(
    replay: Replay, oa: openai.OpenAI
) -> None:
    """Gemini 3 refuses a replayed functionCall without its thought signature: the answer's
    tool call carries it as Gemini's own OpenAI endpoint writes it, and the SDK's message handed
    back in the next turn brings it to the functionCall part again."""
    rec = OWN["gemini.own-signed-call"]
    first = oa.chat.completions.create(**_ask(rec)).choices[0].message
    (call,) = first.tool_calls or []
    assert (call.model_extra or {}).get("extra_content") == {"google": {"thought_signature": SIGNATURE}}
    result = {"role": "tool", "tool_call_id": call.id, "content": "France"}
    oa.chat.completions.create(
        model=rec.model,
        messages=[*_ask(rec)["messages"], first.model_dump(exclude_none=True), result],  # type: ignore[list-item]
    )
    parts = [p for c in replay.sent[rec.model]["contents"] for p in c["parts"] if "functionCall" in p]
    assert [(p["functionCall"]["name"], p.get("thoughtSignature")) for p in parts] == [
        ("get_country", SIGNATURE)
    ]


def _openai_refused(rec: Recording, replay: Replay, oa: openai.OpenAI) -> None:
    """The SDK's typed exception of the recorded status, with the provider's message and no
    error code of the gateway's own (those name its own refusals)."""
    with pytest.raises(openai.APIStatusError) as info:
        if rec.stream:
            list(oa.chat.completions.create(**_ask(rec), stream=True))
        else:
            oa.chat.completions.create(**_ask(rec))
    assert type(info.value) is OPENAI_ERRORS[rec.meta["status"]]
    assert info.value.status_code == rec.meta["status"]
    assert _said(rec) in info.value.message
    assert info.value.code is None
    assert replay.asked[rec.model] is rec.stream


def _openai_stream(oa: openai.OpenAI, rec: Recording, error: dict[str, Any] | None) -> tuple[Any, ...]:
    """The streamed answer as the SDK's chunks add up (text, reasoning, calls, finish, usage); a
    recorded in-stream error raised while iterating, after the text before it."""
    stream = oa.chat.completions.create(**_ask(rec), stream=True, stream_options={"include_usage": True})
    text, reasoning, finish, usage = "", "", None, None
    calls: dict[int, list[str]] = {}
    chunks = iter(stream)
    try:
        for chunk in chunks:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                delta = choice.delta
                text += delta.content or ""
                reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
                finish = choice.finish_reason or finish
                for call in delta.tool_calls or []:
                    got = calls.setdefault(call.index, ["", "", ""])
                    got[0] += call.id or ""
                    got[1] += (call.function and call.function.name) or ""
                    got[2] += (call.function and call.function.arguments) or ""
    except openai.APIError as exc:
        assert error is not None and error["in_stream"], f"the stream broke: {exc}"
        assert not isinstance(exc, openai.APIStatusError)  # in the stream, not a status
        assert text == error["text_before_error"]
        return ()
    finally:
        stream.close()
    assert error is None, "a recorded in-stream error ended the stream cleanly"
    return text, reasoning, [tuple(c) for _, c in sorted(calls.items())], finish, usage


# -- the Anthropic dialect ----------------------------------------------------------------------

ANTHROPIC_ERRORS: dict[int, type[anthropic.APIStatusError]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    429: anthropic.RateLimitError,
}
STOPS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


@pytest.fixture(scope="module")
def an(replay: Replay) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=replay.served.url, api_key="none", max_retries=0, timeout=10) as client:
        yield client


@recorded
@pytest.mark.parametrize("model", list(RECORDINGS), ids=IDS)
def test_anthropic_sdk_reads_the_replayed_recording(
    model: str, replay: Replay, an: anthropic.Anthropic
) -> None:
    rec = RECORDINGS[model]
    expect = rec.meta["expect"]
    error = expect["error"]
    ask: dict[str, Any] = {**_ask(rec), "max_tokens": 1024}
    if rec.meta["status"] != 200:
        _anthropic_refused(rec, replay, an)
        return
    if rec.stream:
        text = ""
        try:
            with an.messages.stream(**ask) as stream:
                for piece in stream.text_stream:
                    text += piece
                message = stream.get_final_message()
        except anthropic.APIStatusError as exc:
            assert error is not None and error["in_stream"], f"the stream broke: {exc}"
            assert exc.status_code == 200  # an error event in the stream, not a status
            assert text == error["text_before_error"]
            if rec.kind == "anthropic":  # the provider's own error type
                recorded = next(d for d in _docs(rec) if d.get("type") == "error")
                assert exc.body["error"]["type"] == recorded["error"]["type"]  # type: ignore[index]
            return
        assert error is None, "a recorded in-stream error ended the stream cleanly"
        assert text == expect["text"]
    else:
        message = an.messages.create(**ask)
    assert replay.asked[model] is rec.stream
    assert message.model == model
    assert "".join(b.text for b in message.content if b.type == "text") == expect["text"]
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in calls] == _calls(rec)
    _ids(rec, [b.id for b in calls])
    thoughts = [(b.thinking, b.signature) for b in message.content if b.type == "thinking"]
    if rec.kind == "anthropic":
        assert thoughts == _thinking(rec)
    else:
        assert "".join(t for t, _ in thoughts) == "".join(t for t, _ in _thinking(rec))
    assert message.stop_reason == STOPS[expect["finish"]]
    read, write = _cache(rec)
    usage = message.usage
    assert usage.input_tokens == _prompt(rec) - read - write
    assert usage.output_tokens == expect["usage"]["output"]
    assert (usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0) == (read, write)


@pytest.mark.parametrize("model", REFUSALS)
def test_anthropic_sdk_gets_a_providers_refusal(model: str, replay: Replay, an: anthropic.Anthropic) -> None:
    _anthropic_refused(OWN[model], replay, an)


def _anthropic_refused(rec: Recording, replay: Replay, an: anthropic.Anthropic) -> None:
    """The SDK's typed exception of the recorded status, its error type the status's, with the
    provider's message."""
    ask: dict[str, Any] = {**_ask(rec), "max_tokens": 1024}
    with pytest.raises(anthropic.APIStatusError) as info:
        if rec.stream:
            with an.messages.stream(**ask) as stream:
                stream.get_final_message()
        else:
            an.messages.create(**ask)
    assert type(info.value) is ANTHROPIC_ERRORS[rec.meta["status"]]
    assert info.value.status_code == rec.meta["status"]
    assert info.value.body["error"]["type"] == ERROR_TYPES[rec.meta["status"]]  # type: ignore[index]
    assert _said(rec) in info.value.message
    assert replay.asked[rec.model] is rec.stream
