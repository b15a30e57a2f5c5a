"""OpenAI Chat Completions (``POST /v1/chat/completions``) in front of the routing graph.

The request is already the engine's own shape (OpenAI-style): it is checked, ``n`` above 1 is
refused (one answer per request), and what the client sent passes on as it is (``seed``, ``user``,
``logprobs``... reach an OpenAI-kind provider as written). Answers are ``chat.completion`` and
``chat.completion.chunk`` objects whatever provider answered: reasoning as ``reasoning_content``
(message field and deltas), tool calls as OpenAI's (deltas with ``index``, then ``id``, ``name``
and ``arguments`` pieces), usage with ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``; a whole answer's signatures as ``Response.message()``
hands them back (Anthropic's ``reasoning_signature``, Gemini's tool-call
``extra_content.google.thought_signature``, as Gemini's own OpenAI endpoint answers it), so a
client's next turn returns them; ``stream_options.include_usage`` adds the final
usage-only chunk. A stream that breaks after its first chunk ends with ``data: {"error": ...}``,
never with ``data: [DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from random import getrandbits
from typing import Any

from engine.errors import RequestError, RouteError
from engine.gateway.dialect import Dialect
from engine.gateway.jsonio import dumps
from engine.result import Done, ReasoningDelta, Response, StreamEvent, TextDelta, ToolCallDelta, Usage

__all__ = ["OpenAIDialect", "completion", "usage_of"]

DONE = b"data: [DONE]\n\n"
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_supported",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}
_CODES = {
    401: "invalid_api_key",
    403: "model_not_allowed",
    404: "model_not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    502: "all_targets_failed",
    504: "deadline_exceeded",
}


def usage_of(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object of the engine's ``Usage``."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion(response: Response, model: Any) -> dict[str, Any]:
    """The ``chat.completion`` object of an answer (``model``: the name it goes out under): its
    text, reasoning (``reasoning_content``), tool calls and usage. The gateway's answers and the
    batch's output lines are this object."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    back = response.message()  # (what hands the answer back: the signatures)
    if "reasoning_signature" in back:
        message["reasoning_signature"] = back["reasoning_signature"]
    if "tool_calls" in back:
        message["tool_calls"] = back["tool_calls"]
    message["refusal"] = None
    return {
        "id": _id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(response.finish_reason, bool(response.tool_calls)),
            }
        ],
        "usage": usage_of(response.usage),
    }


def _id() -> str:
    """A fresh answer id (random, like OpenAI's; not a secret: no syscall for it)."""
    return f"chatcmpl-{getrandbits(96):024x}"


class OpenAIDialect(Dialect):
    name = "openai"

    def parse(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        if type(body) is not dict:
            raise RequestError("", "the body must be a JSON object (a chat completion request)")
        n = body.get("n")
        if n is not None and n != 1:
            raise RequestError("n", f"only n=1 is supported (one choice per request), got {n!r}")
        options = body.get("stream_options")
        if options is not None and type(options) is not dict:
            raise RequestError("stream_options", "expected an object")
        return dict(body)

    def answer(self, response: Response, request: Mapping[str, Any]) -> dict[str, Any]:
        return completion(response, request["model"])

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        options = request.get("stream_options")
        include_usage = type(options) is dict and options.get("include_usage") is True
        head = b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
            _id().encode(),
            int(time.time()),
            dumps(request["model"]),
        )
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        # a text chunk is its delta's JSON string between two templates (the first one with the
        # role); every other chunk is built as a dict
        text = b'data: %s"choices":[{"index":0,"delta":{"content":' % head
        first_text = b'data: %s"choices":[{"index":0,"delta":{"role":"assistant","content":' % head
        text_end = b'},"logprobs":null,"finish_reason":null}]' + tail
        first, calls, sent = True, False, False
        try:
            async for event in events:
                if type(event) is TextDelta:
                    yield b"".join((first_text if first else text, dumps(event.text), text_end))
                    first = False
                    sent = True
                    continue
                if type(event) is Done:
                    yield _frame(head, {}, _finish(event.finish_reason, calls), tail)
                    if include_usage:
                        yield b'data: %s"choices":[],"usage":%s}\n\n' % (head, dumps(usage_of(event.usage)))
                    yield DONE
                    return
                delta = _delta(event)
                if delta is None:
                    continue
                calls = calls or type(event) is ToolCallDelta
                if first:
                    delta = {"role": "assistant", **delta}
                    first = False
                yield _frame(head, delta, None, tail)
                sent = True
        except RouteError as exc:
            if not sent:
                raise
            yield self.stream_error(exc)

    def error(
        self, status: int, message: str, *, kind: str | None = None, relayed: bool = False
    ) -> dict[str, Any]:
        return {
            "error": {
                "message": message,
                "type": kind or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
                "param": None,
                "code": _CODES.get(status) if kind is None and not relayed else None,
            }
        }

    def stream_error(self, error: RouteError | Exception) -> bytes:
        message = error.message if isinstance(error, RouteError) else str(error) or type(error).__name__
        body = {
            "error": {"message": message, "type": "stream_error", "param": None, "code": "stream_interrupted"}
        }
        return b"data: " + dumps(body) + b"\n\n"


def _frame(head: bytes, delta: dict[str, Any], finish: str | None, tail: bytes) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b'data: %s"choices":[%s]%s' % (head, dumps(choice), tail)


def _delta(event: StreamEvent) -> dict[str, Any] | None:
    """The chunk ``delta`` of one event (``None``: nothing OpenAI's shape can carry, such as a
    reasoning block's bare signature)."""
    if type(event) is TextDelta:
        return {"content": event.text}
    if type(event) is ToolCallDelta:
        call: dict[str, Any] = {"index": event.index}
        if event.id is not None:
            call["id"] = event.id
            call["type"] = "function"
        function: dict[str, Any] = {"arguments": event.arguments}
        if event.name is not None:
            function["name"] = event.name
        call["function"] = function
        return {"tool_calls": [call]}
    if type(event) is ReasoningDelta and event.text:
        return {"reasoning_content": event.text}
    return None


def _finish(reason: str | None, calls: bool) -> str:
    """OpenAI's finish_reason (the engine's kinds already use OpenAI's words)."""
    if reason in ("stop", "length", "tool_calls", "content_filter", "function_call"):
        return reason
    return "tool_calls" if calls else "stop"
