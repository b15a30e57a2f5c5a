"""What a routed request produces: usage, attempts, the response and stream events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "Done",
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


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one target. ``error`` is a short kind (timeout, connect, reset, protocol,
    status, parse) plus detail; it never contains a secret. ``cached`` and ``coalesced`` attempts
    sent nothing: their latency is the time spent waiting for the shared answer."""

    target: str
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    latency: float = 0.0  # seconds
    retry_after: float | None = None

    def __str__(self) -> str:
        bits = [self.target, self.outcome]
        if self.status is not None:
            bits.append(str(self.status))
        if self.error:
            bits.append(self.error)
        bits.append(f"{self.latency * 1000:.1f}ms")
        return " ".join(bits)


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
