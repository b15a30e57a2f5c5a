"""Every response recorded from the real APIs (``../shared/wire-recordings``, third-party data kept
outside the repository: skipped where it is absent) through the engine's own parsers, compared
with what the official SDK made of the same bytes (each recording's ``meta.json``): text, finish
reason, tool calls, usage, in-stream errors and the text before them. Reasoning is compared with
what the installed SDK itself parses out of the bytes (``anthropic``, ``google-genai``, ``ollama``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.providers import get_kind
from engine.providers.base import Parsed, StreamParser, WireError, loads
from engine.result import ReasoningBlock, ReasoningDelta, TextDelta, ToolCallDelta, Usage

ROOT = Path(
    os.environ.get("ENGINE_WIRE_RECORDINGS")
    or Path(__file__).resolve().parents[3] / "shared" / "wire-recordings"
)
METAS = sorted(ROOT.glob("*/*.meta.json")) if ROOT.is_dir() else []

pytestmark = pytest.mark.skipif(not METAS, reason=f"no wire recordings at {ROOT}")


class Seen:
    """What the engine made of one recording."""

    def __init__(self) -> None:
        self.text = ""
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.calls: list[dict[str, Any]] = []
        self.reasoning: tuple[ReasoningBlock, ...] = ()
        self.deltas = ""  # the stream's ReasoningDelta texts joined
        self.error: str | None = None


def _body(meta_path: Path) -> tuple[dict[str, Any], bytes]:
    meta = json.loads(meta_path.read_text())
    name = meta_path.name.removesuffix(".meta.json") + "." + meta["body_file_ext"]
    return meta, (meta_path.parent / name).read_bytes()


def _parsed(kind: str, body: bytes) -> Seen:
    seen = Seen()
    parsed: Parsed = get_kind(kind).parse(loads(body))
    seen.text, seen.finish, seen.usage = parsed.text, parsed.finish_reason, parsed.usage
    seen.calls = [
        {"id": c.id, "name": c.name, "arguments": json.loads(c.arguments)} for c in parsed.tool_calls
    ]
    seen.reasoning = parsed.reasoning
    return seen


def _streamed(kind: str, body: bytes) -> Seen:
    seen = Seen()
    parser: StreamParser = get_kind(kind).stream_parser()
    calls: dict[int, dict[str, Any]] = {}
    texts: list[str] = []
    thoughts: list[str] = []
    try:
        for line in [*body.decode().splitlines(), ""]:
            for event in parser.feed(line):
                if isinstance(event, TextDelta):
                    texts.append(event.text)
                elif isinstance(event, ReasoningDelta):
                    thoughts.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    call = calls.setdefault(event.index, {"id": None, "name": "", "arguments": ""})
                    call["id"] = event.id or call["id"]
                    call["name"] += event.name or ""
                    call["arguments"] += event.arguments
    except WireError as exc:
        seen.error = str(exc)
    else:
        assert parser.done, "the stream's end marker was not seen"
    seen.text, seen.deltas = "".join(texts), "".join(thoughts)
    seen.finish, seen.usage, seen.reasoning = parser.finish_reason, parser.usage, parser.reasoning
    seen.calls = [{**c, "arguments": json.loads(c["arguments"] or "{}")} for _, c in sorted(calls.items())]
    return seen


def _sdk_input(kind: str, usage: Usage) -> int:
    """The engine's prompt size as the SDK counts it: Anthropic's input_tokens leaves the cached
    prompt out; the other kinds count it in."""
    if kind == "anthropic":
        return usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    return usage.input_tokens


# -- reasoning as the installed SDKs parse it ---------------------------------------------------


def _events(body: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[5:])
        for line in body.decode().splitlines()
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")
    ]


def _anthropic_reasoning(meta: dict[str, Any], body: bytes) -> list[tuple[str, str | None]]:
    pytest.importorskip("anthropic")
    if meta["mode"] == "json":
        from anthropic.types import Message

        content = Message.model_validate(json.loads(body)).content
    else:
        from anthropic.lib.streaming._messages import accumulate_event

        snapshot: Any = None
        bufs: dict[int, bytes] = {}
        for event in _events(body):
            if event.get("type") in ("ping", "error"):
                continue
            snapshot = accumulate_event(
                event=event,  # type: ignore[arg-type]
                current_snapshot=snapshot,
                json_bufs=bufs,
            )
        content = snapshot.content
    out: list[tuple[str, str | None]] = []
    for block in content:
        if block.type == "thinking":
            out.append((block.thinking, block.signature))
        elif block.type == "redacted_thinking":
            out.append(("", block.data))
    return out


def _gemini_reasoning(meta: dict[str, Any], body: bytes) -> tuple[str, list[str]]:
    pytest.importorskip("google.genai")
    from google.genai.types import GenerateContentResponse

    docs = [json.loads(body)] if meta["mode"] == "json" else _events(body)
    thought, signatures = "", []
    for doc in docs:
        response = GenerateContentResponse.model_validate(doc)
        for candidate in (response.candidates or [])[:1]:
            for part in (candidate.content.parts or []) if candidate.content else []:
                if part.thought:
                    thought += part.text or ""
                if part.thought_signature:
                    signatures.append(part.thought_signature)
    return thought, signatures


def _ollama_reasoning(meta: dict[str, Any], body: bytes) -> str:
    ollama = pytest.importorskip("ollama")
    lines = [body] if meta["mode"] == "json" else body.splitlines()
    return "".join(
        ollama.ChatResponse.model_validate_json(line).message.thinking or "" for line in lines if line.strip()
    )


def _check_reasoning(kind: str, meta: dict[str, Any], body: bytes, seen: Seen) -> None:
    blocks = seen.reasoning
    assert all(b.kind == kind for b in blocks)
    if meta["mode"] == "stream":
        assert seen.deltas == "".join(b.text for b in blocks)
    if kind == "anthropic":
        expected = _anthropic_reasoning(meta, body)
        got = [(b.text, b.signature) if b.redacted is None else ("", b.redacted) for b in blocks]
        assert got == expected
    elif kind == "gemini":
        thought, signatures = _gemini_reasoning(meta, body)
        assert "".join(b.text for b in blocks) == thought
        # the SDK decodes the base64 signature; compare it with the engine's text decoded
        import base64

        assert [base64.b64decode(b.signature) for b in blocks if b.signature] == signatures
    elif kind == "ollama":
        assert "".join(b.text for b in blocks) == _ollama_reasoning(meta, body)
    else:  # no OpenAI recording here carries reasoning text
        assert blocks == ()


@pytest.mark.parametrize("meta_path", METAS, ids=[f"{p.parent.name}/{p.name[:-10]}" for p in METAS])
def test_the_engine_parses_the_recording_as_the_sdk_did(meta_path: Path) -> None:
    meta, body = _body(meta_path)
    kind, expect = meta["kind"], meta["expect"]
    error = expect["error"]
    if meta["status"] != 200:  # an HTTP error: the engine's message is the body's
        message = get_kind(kind).error_message(loads(body))
        assert message and error["status"] == meta["status"]
        if error.get("message"):
            detail = message.split(": ", 1)[-1]
            assert detail[:60] in error["message"].replace("\\'", "'")
        return
    seen = _streamed(kind, body) if meta["mode"] == "stream" else _parsed(kind, body)
    if error is not None:  # an in-stream error: the text before it, then the error's message
        assert error["in_stream"] and seen.error is not None
        assert seen.text == error["text_before_error"]
        return
    assert seen.error is None
    assert seen.text == expect["text"]
    assert seen.finish == expect["finish"]
    assert len(seen.calls) == len(expect["tool_calls"])
    calls = [
        {k: v for k, v in c.items() if k != "id" or e.get("id")}  # the SDK's id, if any
        for c, e in zip(seen.calls, expect["tool_calls"], strict=True)
    ]
    assert calls == [{k: v for k, v in e.items() if v is not None} for e in expect["tool_calls"]]
    assert seen.usage is not None
    assert (_sdk_input(kind, seen.usage), seen.usage.output_tokens) == (
        expect["usage"]["input"],
        expect["usage"]["output"],
    )
    _check_reasoning(kind, meta, body, seen)
