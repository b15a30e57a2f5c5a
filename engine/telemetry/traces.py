"""OpenTelemetry spans on the GenAI semantic conventions (only imported with ``traces: true``).

A span ``chat {model}`` per routed request, its parent the caller's current context when the
request started (the gateway makes an incoming ``traceparent`` current), and a child span per try
with the try's own start and end times (``Attempt.latency`` before its end). All are made when the
request ends, so each span's attributes are handed to the SDK once. ``gen_ai.system``
(deprecated) is never set; prompt and answer text only with ``capture_content``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from engine.result import Attempt, Done, Response, Usage
from engine.telemetry.names import error_type
from engine.telemetry.targets import TargetInfo

__all__ = ["Begun", "Tracing", "TryEnd", "content_messages", "usage_attributes"]

TryEnd = tuple[Attempt, TargetInfo, str | None, int]
"""A try as the recorder keeps it for its span: the attempt, its target, circuit state, end ns."""
_NOT_SENT: Final = frozenset({"skipped", "cached", "coalesced"})


class Begun(NamedTuple):
    """A request's span as it started: the caller's context, the start time, the attributes."""

    context: Context
    start: int  # ns since the epoch
    attrs: dict[str, Any]


class Tracing:
    """Makes the spans; one per ``Telemetry``. A request's span and its tries' are made when the
    request ends (with their own start and end times), each with every attribute at once: one
    ``start_span`` and one ``end`` per span, no ``set_attribute`` calls, and no try spans (nor
    their attributes) when the request's span is not recording (its sampler dropped it)."""

    __slots__ = ("capture", "tracer")

    def __init__(
        self, provider: TracerProvider | None = None, *, capture_content: bool = False, version: str = ""
    ) -> None:
        self.tracer = trace.get_tracer("engine", version or None, tracer_provider=provider)
        self.capture = capture_content

    def begin(self, model: str, route: str, request: Mapping[str, Any] | None, stream: bool) -> Begun:
        """At the request's start: its parent (the current context), start time and attributes."""
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "engine.route": route,
            "gen_ai.request.stream": stream,
        }
        if request is not None:
            _request_attributes(attrs, request, self.capture)
        return Begun(context_api.get_current(), time.time_ns(), attrs)

    def emit(self, begun: Begun, model: str, tries: Sequence[TryEnd], error: str | None = None) -> None:
        """The request's span (``error``: the request failed, with this ``error.type``) and a child
        per try, each try ``(attempt, target, circuit state, end ns)``."""
        span = self.tracer.start_span(
            f"chat {model}",
            context=begun.context,
            kind=SpanKind.CLIENT,
            attributes=begun.attrs,
            start_time=begun.start,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        if tries and span.is_recording():
            parent = trace.set_span_in_context(span, begun.context)
            for attempt, target, circuit, end in tries:
                self._try_span(parent, attempt, target, circuit, end, model)
        span.end()

    def _try_span(
        self, parent: Context, attempt: Attempt, target: TargetInfo, circuit: str | None, end: int, model: str
    ) -> None:
        attrs = dict(target.try_attrs)
        if not target.model:
            attrs["gen_ai.request.model"] = model
        attrs["engine.attempt.outcome"] = attempt.outcome
        if attempt.status is not None:
            attrs["http.response.status_code"] = attempt.status
        if circuit is not None:
            attrs["engine.circuit"] = circuit
        error = error_type(attempt)
        if error is not None:
            attrs["error.type"] = error
        span = self.tracer.start_span(
            target.span_name if target.model else f"chat {model}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=end - int(attempt.latency * 1e9),
        )
        if error is not None and attempt.outcome not in _NOT_SENT:
            span.set_status(Status(StatusCode.ERROR, attempt.error or error))
        span.end(end_time=end)

    def answer_attributes(self, attrs: dict[str, Any], result: Response | Done) -> None:
        """The answer's attributes, added to the request span's ``attrs``."""
        attrs["gen_ai.response.model"] = result.model
        if result.finish_reason is not None:
            attrs["gen_ai.response.finish_reasons"] = (result.finish_reason,)
        rid = _response_id(result)
        if rid is not None:
            attrs["gen_ai.response.id"] = rid
        usage = result.usage
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        if usage.cache_read_tokens or usage.cache_write_tokens or usage.reasoning_tokens:
            attrs.update(usage_attributes(usage))
        if self.capture and isinstance(result, Response):
            out = [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": result.text}],
                    "finish_reason": result.finish_reason or "",
                }
            ]
            attrs["gen_ai.output.messages"] = json.dumps(out, ensure_ascii=False)


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
