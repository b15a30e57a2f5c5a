"""Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``) in front of the
routing graph: requests read by ``anthropic_request``, streams written by ``anthropic_stream``,
whole answers and errors in Anthropic's shapes here.

An answer names the model the client asked for (the route name or model it sent, as the SDKs
and coding agents expect to see it echoed); the model that answered is in ``x-engine-model``.
When the provider is of kind ``anthropic``, its own message (id, content blocks with citations
and server-tool blocks, stop_reason, stop_sequence, usage: ``Response.native``) is answered as
it came, from the response cache and to a request that shared an identical one's answer too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from engine.errors import DeadlineExceeded, RouteError
from engine.gateway.anthropic_request import read_request
from engine.gateway.anthropic_stream import StreamWriter, event, message_id, stop_reason, usage_of
from engine.gateway.dialect import Dialect
from engine.result import Response, StreamEvent

__all__ = ["ERROR_TYPES", "AnthropicCountDialect", "AnthropicDialect", "count_answer", "endpoints"]

ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "not_supported",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def count_answer(tokens: int) -> dict[str, Any]:
    """The body of a ``/v1/messages/count_tokens`` answer."""
    return {"input_tokens": tokens}


class AnthropicDialect(Dialect):
    """Anthropic Messages. ``keepalive`` stays an SSE comment: every SSE parser skips it, while
    a ``ping`` event before ``message_start`` reaches the accumulator of a client that does not
    filter pings (the Python SDK's refuses any event before ``message_start``)."""

    name = "anthropic"

    def parse(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        return read_request(body, headers)

    def answer(self, response: Response, request: Mapping[str, Any]) -> dict[str, Any]:
        """The provider's own message where it has one (``Response.native``: as it came, from
        the cache and in a shared answer too), else one built from the unified fields."""
        own = response.native
        if own is not None and type(own.get("content")) is list:
            ident, content, usage = own.get("id"), own["content"], own.get("usage")
            reason, sequence = own.get("stop_reason"), own.get("stop_sequence")
        else:
            ident, content, usage = None, _content(response), None
            reason, sequence = stop_reason(response.finish_reason, bool(response.tool_calls)), None
        return {
            "id": ident if type(ident) is str and ident else message_id(),
            "type": "message",
            "role": "assistant",
            "model": request.get("model"),
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage if type(usage) is dict else usage_of(response.usage),
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        writer = StreamWriter(request)
        try:
            async for ev in events:
                yield writer.feed(ev)
        except Exception as exc:
            if not writer.started:
                raise
            yield self.stream_error(exc)
            return
        if not writer.done:  # ended without its final event: never a clean end
            yield event("error", _error("api_error", "the stream ended before its final event"))

    def error(
        self, status: int, message: str, *, kind: str | None = None, relayed: bool = False
    ) -> dict[str, Any]:
        default = "api_error" if status >= 500 else "invalid_request_error"
        return _error(kind or ERROR_TYPES.get(status, default), message)

    def stream_error(self, error: RouteError | Exception) -> bytes:
        return event("error", _error(_stream_type(error), _message(error)))


class AnthropicCountDialect(AnthropicDialect):
    """``/v1/messages/count_tokens``: a Messages body without ``max_tokens``."""

    def parse(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        return read_request(body, headers, count=True)


def endpoints(gateway: Any) -> dict[str, Any]:
    """The server's table entries of this dialect (``engine.gateway.routes`` adds them)."""
    from engine.gateway.anthropic_endpoints import table

    return table(AnthropicDialect(), AnthropicCountDialect())


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _message(error: BaseException) -> str:
    if isinstance(error, RouteError):
        return error.message
    return f"the stream failed ({type(error).__name__})"


def _stream_type(error: BaseException) -> str:
    """The error type of a stream that broke: timeout, overloaded (529/503, or the provider's
    own in-stream overloaded_error), else api_error."""
    if isinstance(error, DeadlineExceeded):
        return "timeout_error"
    last = error.attempts[-1] if isinstance(error, RouteError) and error.attempts else None
    if last is None:
        return "api_error"
    if last.kind in ("timeout", "deadline"):
        return "timeout_error"
    if last.status in (503, 529) or "overloaded" in (last.detail or ""):
        return "overloaded_error"
    return "api_error"


def _content(response: Response) -> list[dict[str, Any]]:
    """Thinking (with signatures) and redacted thinking first, then the text, then the tool calls."""
    out: list[dict[str, Any]] = [
        _thought(b.native()) for b in response.reasoning_blocks if b.text or b.redacted is not None
    ]
    if response.text:
        out.append({"type": "text", "text": response.text})
    for call in response.tool_calls:
        out.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)})
    return out


def _thought(block: dict[str, Any]) -> dict[str, Any]:
    """A thinking block always has its ``signature`` (empty from a provider that signs none),
    as Anthropic's and the stream's blocks have."""
    if block["type"] == "thinking" and "signature" not in block:
        block["signature"] = ""
    return block


def _input(arguments: str) -> Any:
    """A tool call's arguments as the object Anthropic's ``input`` is (broken JSON kept as text)."""
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return value if type(value) is dict else {"arguments": value}
