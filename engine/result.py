"""What a routed request produces: usage, attempts, the response and stream events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "Done",
    "ErrorKind",
    "Outcome",
    "Response",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]

Outcome = Literal[
    "ok",            # answered
    "retry",         # failed, retried on the same target
    "failover",      # failed, moved on to the next target
    "fatal",         # non-failover client error: raised at once
    "skipped",       # circuit open or rate limited: no network cost
    "cancelled",     # hedge loser or deadline
    "deadline",      # ran out of time
    "cached",        # answered from the response cache: no network
    "coalesced",     # answered by an identical request in flight (single-flight): no network
]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the OpenAI wire format carries it


ErrorKind = Literal[
    "timeout",       # no answer (or no whole answer) in time
    "connect",       # the connection could not be made
    "reset",         # the connection broke, or a stream ended before its end marker
    "protocol",      # an answer the kind cannot read: not JSON, wrong shape, an in-band error event
    "status",        # an HTTP error status (4xx, 5xx)
    "template",      # the target's template could not render the request: nothing was sent
    "circuit_open",  # skipped: the target's circuit is open
    "rate_limited",  # skipped: the target's rate limit had no room
    "cancelled",     # a hedge that lost, or the caller cancelled
    "deadline",      # the route's deadline cut the try short
    "closed",        # the engine was closed under the try
]
"""What went wrong in a failed (or skipped, or cut short) attempt."""

_PREFIXED: frozenset[str] = frozenset({"timeout", "connect", "reset", "protocol", "status",
                                       "template"})
# attempts built with only ``error`` (as before ``kind`` existed): the runtime's own phrases
_PHRASES: dict[str, ErrorKind] = {
    "circuit open": "circuit_open", "rate limited": "rate_limited",
    "the engine was closed": "closed", "cancelled": "cancelled", "deadline": "deadline",
}
_SAID: dict[str, str] = {kind: phrase for phrase, kind in _PHRASES.items()}  # kind's own detail


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one target. ``kind`` says what went wrong (``ErrorKind``; ``None`` for
    an attempt that answered), ``detail`` says it for a human, and ``error`` is the two as one
    line: ``"kind: detail"`` for a failure on the wire (timeout, connect, reset, protocol,
    status, template), the detail alone otherwise (``"circuit open"``, ``"cancelled"``). None of
    them contains a secret. ``cached`` and ``coalesced`` attempts sent nothing: their latency is
    the time spent waiting for the shared answer.

    Built with ``kind`` (and ``detail``), ``error`` is derived; built with ``error`` alone, as
    before ``kind`` existed, ``kind`` and ``detail`` are read back from it.
    """

    target: str
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    latency: float = 0.0  # seconds
    retry_after: float | None = None
    kind: ErrorKind | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None:
            if self.error is None:
                detail = self.detail if self.detail is not None else _SAID.get(self.kind,
                                                                               self.kind)
                error = f"{self.kind}: {detail}" if self.kind in _PREFIXED else detail
                object.__setattr__(self, "error", error)
            if self.detail is None:
                object.__setattr__(self, "detail", _detail_of(self.kind, self.error))
        elif self.error is not None:
            kind, detail = _split(self.error, self.outcome)
            object.__setattr__(self, "kind", kind)
            if self.detail is None:
                object.__setattr__(self, "detail", detail)

    def __str__(self) -> str:
        bits = [self.target, self.outcome]
        if self.status is not None:
            bits.append(str(self.status))
        if self.error:
            bits.append(self.error)
        bits.append(f"{self.latency * 1000:.1f}ms")
        return " ".join(bits)


def _detail_of(kind: str, error: str | None) -> str | None:
    if error is None:
        return None
    prefix = kind + ": "
    return error[len(prefix):] if error.startswith(prefix) else error


def _split(error: str, outcome: str) -> tuple[ErrorKind | None, str]:
    """An ``error`` text's kind and detail (``None``: a text of no form the runtime writes)."""
    head, sep, rest = error.partition(": ")
    if sep and head in _PREFIXED:
        return head, rest  # type: ignore[return-value]
    phrase = _PHRASES.get(error)
    if phrase is not None:
        return phrase, error
    if outcome == "cancelled":
        return "cancelled", error
    if outcome == "deadline":
        return "deadline", error
    return None, error


@dataclass(frozen=True, slots=True)
class Response:
    text: str
    provider: str
    model: str
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None  # USD, from the prices in the config; None when unknown
    cached: bool = False
    latency: float = 0.0  # seconds, whole request
    attempts: tuple[Attempt, ...] = ()
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Done:
    """The final stream event."""

    provider: str
    model: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    attempts: tuple[Attempt, ...] = ()
    latency: float = 0.0
    ttft: float | None = None  # time to first token, seconds
    cached: bool = False
    type: Literal["done"] = "done"


StreamEvent = TextDelta | ToolCallDelta | Done
