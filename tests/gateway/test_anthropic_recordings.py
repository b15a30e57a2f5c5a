"""Answers and streams recorded from the real Anthropic API (``../shared/wire-recordings``,
third-party data kept outside the repository: skipped where it is absent), served by a loopback
upstream, routed through the engine and written back by the Anthropic dialect. A recorded answer
comes back as it came (the requested model aside), a recorded refusal as Anthropic's error of
the same type. A relayed stream has the recorded event sequence's shape (event names, block
types and indexes, delta types; pings and the empty deltas the engine drops aside), the recorded
stop reason and final usage, and a recorded in-stream error ends it as an ``event: error`` of
the same type. Every block is relayed, those the engine's events do not model (a
``compaction`` block) included, as its provider's own events."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import ProviderError
from engine.gateway.anthropic import AnthropicDialect

ROOT = (
    Path(
        os.environ.get("ENGINE_WIRE_RECORDINGS")
        or Path(__file__).resolve().parents[3] / "shared" / "wire-recordings"
    )
    / "anthropic"
)
STREAMS = sorted(ROOT.glob("*.sse")) if ROOT.is_dir() else []
WHOLE = sorted(p for p in ROOT.glob("*.json") if not p.name.endswith(".meta.json")) if ROOT.is_dir() else []

pytestmark = pytest.mark.skipif(not STREAMS, reason=f"no Anthropic stream recordings at {ROOT}")


def events(data: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in data.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in chunk.split("\n") if line and not line.startswith(":")]
        name = next((line[6:].strip() for line in lines if line.startswith("event:")), None)
        data_line = next((line[5:].strip() for line in lines if line.startswith("data:")), None)
        if name is not None and data_line is not None:
            out.append((name, json.loads(data_line)))
    return out


def shape(seen: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """Event names with block types, indexes and delta types; runs of one delta as one."""
    out: list[tuple[Any, ...]] = []
    for name, data in seen:
        if name == "ping" or (name == "content_block_delta" and _empty(data["delta"])):
            continue
        if name == "content_block_start":
            row: tuple[Any, ...] = (name, data["index"], data["content_block"]["type"])
        elif name == "content_block_delta":
            row = (name, data["index"], data["delta"]["type"])
        elif name == "content_block_stop":
            row = (name, data["index"])
        else:
            row = (name,)
        if not out or out[-1] != row:
            out.append(row)
    return out


COUNTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
MODELLED = frozenset({"text_delta", "thinking_delta", "signature_delta", "input_json_delta"})


def _native(name: str, data: dict[str, Any]) -> bool:
    """An event the engine's stream events do not model: a block of another type, its deltas."""
    if name == "content_block_start":
        return data["content_block"]["type"] not in ("text", "thinking", "redacted_thinking", "tool_use")
    return name == "content_block_delta" and data["delta"]["type"] not in MODELLED


def _empty(delta: dict[str, Any]) -> bool:
    return not any(v for k, v in delta.items() if k != "type")


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A loopback upstream answering ``POST /v1/messages`` with the recording its model names
    (with the recorded status and content type)."""
    bodies: dict[str, bytes] = {}

    async def messages(request: web.Request) -> web.StreamResponse:
        name = (await request.json())["model"]
        meta = json.loads((ROOT / f"{name}.meta.json").read_text())
        resp = web.StreamResponse(status=meta["status"], headers={"content-type": meta["content_type"]})
        await resp.prepare(request)
        await resp.write(bodies[name])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", bodies
    finally:
        await runner.cleanup()


def engine_for(url: str, name: str) -> Engine:
    text = f"""
version: 1
defaults: {{retry: strict, breaker: none, deadline: 10s}}
retry:
  strict: {{retry_on: {{status: [], errors: []}}, failover_on: {{status: [], errors: []}}}}
providers:
  rec: {{kind: anthropic, base_url: "{url}", api_key: key-rec-1, models: {{"{name}": {{}}}}}}
routes:
  - match: {{}}
    to: rec
"""
    return Engine.from_graph(compile_text(text, env={}))


def ask(name: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": name,
        "max_tokens": 4096,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize("path", WHOLE, ids=[p.stem for p in WHOLE])
async def test_a_recorded_answer_is_answered_as_it_came(
    path: Path, upstream: tuple[str, dict[str, bytes]]
) -> None:
    """A 200 answer in Anthropic's shape as recorded (the requested model aside); a refusal as
    Anthropic's error of the same type."""
    url, bodies = upstream
    recorded = json.loads(bodies.setdefault(path.stem, path.read_bytes()))
    dialect = AnthropicDialect()
    request = dialect.parse(ask(path.stem), {})
    async with engine_for(url, path.stem) as engine:
        try:
            answer = dialect.answer(await engine.route(request), request)
        except ProviderError as exc:
            assert exc.status is not None
            answer = dialect.error(exc.status, exc.message)
    if recorded.get("type") == "error":
        assert answer["error"]["type"] == recorded["error"]["type"]
    else:
        assert answer == {**recorded, "model": path.stem}


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
async def test_a_relayed_recording_keeps_its_event_sequence(
    path: Path, upstream: tuple[str, dict[str, bytes]]
) -> None:
    url, bodies = upstream
    bodies[path.stem] = path.read_bytes()
    dialect = AnthropicDialect()
    request = dialect.parse(ask(path.stem, stream=True), {})
    async with engine_for(url, path.stem) as engine:
        relayed = events(
            b"".join([f async for f in dialect.stream(engine.stream(request), request)]).decode()
        )
    recorded = events(path.read_text())
    error = next((d for n, d in recorded if n == "error"), None)
    if error is not None:
        assert relayed[-1][0] == "error" and relayed[-1][1]["error"]["type"] == error["error"]["type"]
        recorded = [e for e in recorded if e[0] != "error"]
        relayed = relayed[:-1]
    assert shape(relayed) == shape(recorded)
    if error is None:
        _same_end(relayed, recorded)


def _same_end(relayed: list[tuple[str, dict[str, Any]]], recorded: list[tuple[str, dict[str, Any]]]) -> None:
    """The recorded stop reason and final usage (message_delta's counts over message_start's)."""
    start = next(d for n, d in recorded if n == "message_start")["message"]["usage"]
    final = next(d for n, d in recorded if n == "message_delta")
    usage = {**start, **{k: v for k, v in final["usage"].items() if v is not None}}
    mine = next(d for n, d in relayed if n == "message_delta")
    assert mine["delta"] == final["delta"]  # stop_reason, stop_sequence, stop_details as sent
    assert {k: v for k, v in mine.items() if k != "usage"} == {k: v for k, v in final.items() if k != "usage"}
    assert {k: v for k, v in mine["usage"].items() if k not in COUNTS} == {
        k: v for k, v in final["usage"].items() if k not in COUNTS
    }
    native = [(n, d) for n, d in recorded if _native(n, d)]
    assert [(n, d) for n, d in relayed if _native(n, d)] == native  # intact, at their indexes
    for key in COUNTS:
        assert mine["usage"][key] == (usage.get(key) or 0), key
