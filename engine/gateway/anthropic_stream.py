"""The engine's stream events in, Anthropic's exact SSE event sequence out: ``message_start``
(once, with usage), then per content block ``content_block_start``, its deltas (``text_delta``,
``thinking_delta``, ``signature_delta``, ``input_json_delta``) and ``content_block_stop``, a
``ping`` after the first block starts (as the API sends it), ``message_delta`` with the stop
reason and the final usage, ``message_stop``.

A block is opened when the kind of delta changes (thinking never inside a text block), and a
signature closes its thinking block. ``message_start`` is the provider's own when it is of kind
``anthropic`` (its message id and usage: input and cache counts), else it carries a new id and
the engine's estimate of the input tokens (the provider's count arrives with the final event);
``message_delta`` carries every final count, which the SDKs let replace ``message_start``'s.

From a provider of kind ``anthropic``, what the engine's events do not model arrives as its own
events (``NativeEvent``) and goes out as it came, renumbered into this stream's blocks: the
blocks of server tools (``server_tool_use``, ``web_search_tool_result``, ...) and
``compaction``, ``citations_delta`` in its text block, the start of a text block that follows
another, and ``message_delta``'s own stop reason (``stop_sequence``, ``pause_turn``, ...),
stop sequence and other fields, with its usage beyond the four counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.estimate import prompt_tokens
from engine.gateway.jsonio import dumps
from engine.result import Done, NativeEvent, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta, Usage

__all__ = ["StreamWriter", "event", "message_id", "stop_reason", "usage_of"]

_STOPS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event: its ``event:`` line and its ``data:`` line."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


# the frame of a text delta, the hottest one, built around its index and its text
_TEXT_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_MID = b',"delta":{"type":"text_delta","text":'
_TEXT_TAIL = b"}}\n\n"


def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def stop_reason(finish: str | None, tools: bool) -> str:
    """The engine's finish reason as Anthropic's ``stop_reason`` (a tool call says tool_use)."""
    reason = _STOPS.get(finish or "stop", "end_turn")
    return "tool_use" if tools and reason == "end_turn" else reason


def usage_of(usage: Usage) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` without the cache reads and writes, as it counts."""
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.input_tokens - read - write),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": usage.output_tokens,
    }


class StreamWriter:
    """One stream's state: the open block, its index, whether the message has started."""

    __slots__ = ("_block", "_end", "_index", "_pinged", "_request", "_tool", "_tools", "done", "started")

    def __init__(self, request: Mapping[str, Any]) -> None:
        self._request = request
        self._block: str | None = None  # the open block's type
        self._index = -1  # the open (or last) block's index
        self._tool: int | None = None  # the engine's index of the open tool call
        self._tools = False
        self._pinged = False
        self._end: dict[str, Any] | None = None  # the provider's own message_delta
        self.started = False
        self.done = False

    def feed(self, ev: StreamEvent) -> bytes:
        """The frames of one engine event, joined (written as one)."""
        if type(ev) is TextDelta and self._block == "text":  # the common case, first
            return (
                b"%s%d%s%s%s" % (_TEXT_HEAD, self._index, _TEXT_MID, dumps(ev.text), _TEXT_TAIL)
                if ev.text
                else b""
            )
        out: list[bytes] = []
        if not self.started:
            self.started = True
            out.append(self._start(ev))
        if isinstance(ev, TextDelta):
            if ev.text:
                self._open(out, "text", {"type": "text", "text": ""})
                out.append(b"%s%d%s%s%s" % (_TEXT_HEAD, self._index, _TEXT_MID, dumps(ev.text), _TEXT_TAIL))
        elif isinstance(ev, ReasoningDelta):
            self._reasoning(out, ev)
        elif isinstance(ev, ToolCallDelta):
            self._tool_call(out, ev)
        elif isinstance(ev, NativeEvent):
            if ev.kind == "anthropic":
                self._native(out, ev.data)
        elif isinstance(ev, Done):
            self._done(out, ev)
        return b"".join(out)

    def _start(self, ev: StreamEvent) -> bytes:
        """``message_start``: the provider's (``NativeEvent``, first of an Anthropic stream) with
        the client's model name, else one of the gateway's own."""
        own = (
            ev.data.get("message")
            if isinstance(ev, NativeEvent) and ev.data.get("type") == "message_start"
            else None
        )
        if type(own) is dict and type(own.get("id")) is str and type(own.get("usage")) is dict:
            theirs = {**own, "model": self._request.get("model"), "content": [], "stop_reason": None}
            return event("message_start", {"type": "message_start", "message": theirs})
        usage = {
            "input_tokens": prompt_tokens(self._request),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._request.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _open(self, out: list[bytes], kind: str, block: Mapping[str, Any], new: bool = False) -> None:
        """Open a block of ``kind`` unless one is open (closing a block of another kind; with
        ``new``, any block)."""
        if self._block == kind and not new:
            return
        self._close(out)
        self._block = kind
        self._index += 1
        out.append(
            event(
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": block},
            )
        )
        if not self._pinged:
            self._pinged = True
            out.append(event("ping", {"type": "ping"}))

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._index}))
            self._block = None
            self._tool = None

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
        )

    def _reasoning(self, out: list[bytes], ev: ReasoningDelta) -> None:
        if ev.redacted is not None:
            self._close(out)
            self._open(out, "redacted_thinking", {"type": "redacted_thinking", "data": ev.redacted})
            self._close(out)
            return
        if ev.text or ev.signature:
            self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if ev.text:
            out.append(self._delta({"type": "thinking_delta", "thinking": ev.text}))
        if ev.signature:
            out.append(self._delta({"type": "signature_delta", "signature": ev.signature}))
            self._close(out)  # a signature ends its block

    def _tool_call(self, out: list[bytes], ev: ToolCallDelta) -> None:
        if self._block != "tool_use" or (ev.index != self._tool):
            self._close(out)
            block = {
                "type": "tool_use",
                "id": ev.id or "toolu_" + uuid.uuid4().hex[:24],
                "name": ev.name or "",
                "input": {},
            }
            self._open(out, "tool_use", block)
            self._tool = ev.index
            self._tools = True
        if ev.arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": ev.arguments}))

    def _native(self, out: list[bytes], data: dict[str, Any]) -> None:
        """A provider's own event: a block's start (its own block, a text block after another),
        a delta in the open block, a block's stop, or the message_delta kept for the end."""
        kind = data.get("type")
        if kind == "content_block_start":
            block = data.get("content_block")
            if type(block) is dict:
                text = block.get("type") == "text"
                self._open(out, "text" if text else "native", block, new=True)
        elif kind == "content_block_delta":
            delta = data.get("delta")
            cites = type(delta) is dict and delta.get("type") == "citations_delta"
            if self._block is None or (cites and self._block != "text"):  # cited before its text
                self._open(out, "text", {"type": "text", "text": ""})
            out.append(event("content_block_delta", {**data, "index": self._index}))
        elif kind == "content_block_stop":
            if self._block == "native":
                self._close(out)
        elif kind == "message_delta":
            self._end = data

    def _done(self, out: list[bytes], done: Done) -> None:
        self._close(out)
        usage: dict[str, Any] = usage_of(done.usage)
        end = self._end
        if end is None:
            delta = {"stop_reason": stop_reason(done.finish_reason, self._tools), "stop_sequence": None}
            body: dict[str, Any] = {"type": "message_delta", "delta": delta, "usage": usage}
        else:  # the provider's own: its stop reason and sequence, every field, counts completed
            given, theirs = end.get("delta"), end.get("usage")
            mine: dict[str, Any] = given if type(given) is dict else {}
            reason = mine.get("stop_reason") or stop_reason(done.finish_reason, self._tools)
            mine = {**mine, "stop_reason": reason, "stop_sequence": mine.get("stop_sequence")}
            if type(theirs) is dict:
                usage.update((k, v) for k, v in theirs.items() if k not in usage)
            body = {**end, "type": "message_delta", "delta": mine, "usage": usage}
        out.append(event("message_delta", body))
        out.append(event("message_stop", {"type": "message_stop"}))
        self.done = True
