"""OpenTelemetry spans on the GenAI semantic conventions (only imported with ``traces: true``).

A span ``chat {model}`` per routed request, its parent the caller's current context (the gateway
makes an incoming ``traceparent`` current), and a child span per try, made when the try ends with
the try's own start time (``Attempt.latency`` before). ``gen_ai.system`` (deprecated) is never set;
prompt and answer text only with ``capture_content``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from engine.result import Attempt, Done, Response, Usage
from engine.telemetry.names import error_type

__all__ = ["Tracing", "content_messages", "usage_attributes"]


class Tracing:
    """Makes the spans; one per ``Telemetry``."""

    __slots__ = ("capture", "tracer")

    def __init__(
        self, provider: TracerProvider | None = None, *, capture_content: bool = False, version: str = ""
    ) -> None:
        self.tracer = trace.get_tracer("engine", version or None, tracer_provider=provider)
        self.capture = capture_content

    def request_span(self, model: str, route: str, request: Mapping[str, Any] | None, stream: bool) -> Span:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "engine.route": route,
            "gen_ai.request.stream": stream,
        }
        if request is not None:
            _request_attributes(attrs, request, self.capture)
        return self.tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs)

    def try_span(self, parent: Span, attempt: Attempt, model: str, attrs: dict[str, Any]) -> None:
        """The finished try as a child span of ``parent`` (``attrs``: provider, server)."""
        end = time.time_ns()
        attrs["gen_ai.operation.name"] = "chat"
        attrs["gen_ai.request.model"] = model
        attrs["engine.target"] = attempt.target
        attrs["engine.attempt.outcome"] = attempt.outcome
        if attempt.status is not None:
            attrs["http.response.status_code"] = attempt.status
        span = self.tracer.start_span(
            f"chat {model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=end - int(attempt.latency * 1e9),
        )
        error = error_type(attempt)
        if error is not None:
            span.set_attribute("error.type", error)
            if attempt.outcome not in ("skipped", "cached", "coalesced"):
                span.set_status(Status(StatusCode.ERROR, attempt.error or error))
        span.end(end_time=end)

    def answered(self, span: Span, result: Response | Done, attrs: Mapping[str, Any]) -> None:
        """The answer's attributes on the request span (``attrs``: provider, engine counts)."""
        span.set_attributes(attrs)
        span.set_attribute("gen_ai.response.model", result.model)
        if result.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
        rid = _response_id(result)
        if rid is not None:
            span.set_attribute("gen_ai.response.id", rid)
        span.set_attributes(usage_attributes(result.usage))
        if self.capture and isinstance(result, Response):
            out = [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": result.text}],
                    "finish_reason": result.finish_reason or "",
                }
            ]
            span.set_attribute("gen_ai.output.messages", json.dumps(out, ensure_ascii=False))

    @staticmethod
    def failed(span: Span, error: BaseException, attrs: Mapping[str, Any]) -> None:
        span.set_attributes(attrs)
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def usage_attributes(usage: Usage) -> dict[str, int]:
    out = {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}
    if usage.cache_read_tokens:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        out["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        out["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return out


def _request_attributes(attrs: dict[str, Any], request: Mapping[str, Any], capture: bool) -> None:
    limit = request.get("max_tokens") or request.get("max_completion_tokens")
    if isinstance(limit, int):
        attrs["gen_ai.request.max_tokens"] = limit
    for key in ("temperature", "top_p"):
        value = request.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[f"gen_ai.request.{key}"] = float(value)
    if capture:
        messages = request.get("messages")
        if isinstance(messages, Sequence):
            attrs["gen_ai.input.messages"] = json.dumps(
                content_messages(messages), ensure_ascii=False, default=str
            )
        system = request.get("system")
        if isinstance(system, str):
            attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])


def content_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Chat messages in the conventions' shape: ``{"role", "parts": [{"type", "content"}]}``."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts: list[Any] = [{"type": "text", "content": content}]
        elif isinstance(content, list):
            parts = [
                {"type": "text", "content": p.get("text", "")}
                if isinstance(p, Mapping) and p.get("type") == "text"
                else p
                for p in content
            ]
        else:
            parts = []
        for call in m.get("tool_calls") or ():
            fn = call.get("function", {}) if isinstance(call, Mapping) else {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": fn.get("name"),
                    "arguments": fn.get("arguments"),
                }
            )
        out.append({"role": m.get("role"), "parts": parts})
    return out


def _response_id(result: Response | Done) -> str | None:
    raw = getattr(result, "raw", None)
    if isinstance(raw, Mapping):
        for key in ("id", "responseId"):
            value = raw.get(key)
            if isinstance(value, str):
                return value
    return None
