"""What a routed request produces: usage, attempts, the response and stream events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "Done",
    "ErrorKind",
    "NativeEvent",
    "Outcome",
    "ReasoningBlock",
    "ReasoningDelta",
    "Response",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "reasoning_text",
]

Outcome = Literal[
    "ok",  # answered
    "retry",  # failed, retried on the same target
    "failover",  # failed, moved on to the next target
    "fatal",  # non-failover client error: raised at once
    "skipped",  # circuit open, rate limited, context too small, a route limit: no network cost
    "cancelled",  # hedge loser or deadline
    "deadline",  # ran out of time
    "cached",  # answered from the response cache: no network
    "coalesced",  # answered by an identical request in flight (single-flight): no network
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, the same meaning for every kind. ``input_tokens`` is the whole prompt, the
    cached part included: ``cache_read_tokens`` of it were read from the provider's prompt cache,
    ``cache_write_tokens`` written to it (Anthropic). ``output_tokens`` is everything billed as
    output, reasoning included: ``reasoning_tokens`` of it were spent thinking (Gemini reports
    thoughts apart from the answer; they are added here, as OpenAI and Anthropic count them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the OpenAI wire format carries it


ErrorKind = Literal[
    "timeout",  # no answer (or no whole answer) in time
    "connect",  # the connection could not be made
    "reset",  # the connection broke, or a stream ended before its end marker
    "protocol",  # an answer the kind cannot read: not JSON, wrong shape, an in-band error event
    "status",  # an HTTP error status (4xx, 5xx)
    "template",  # the target's template could not render the request: nothing was sent
    "circuit_open",  # skipped: the target's circuit is open
    "rate_limited",  # skipped: the target's rate limit had no room
    "cancelled",  # a hedge that lost, or the caller cancelled
    "deadline",  # the route's deadline cut the try short
    "closed",  # the engine was closed under the try
    "context",  # the request does not fit the model's context window: skipped before sending
    # (the model's declared ``context``), or the provider said so (a context-length error)
    "constraint",  # skipped: the target breaks the route's max_price or max_latency
]
"""What went wrong in a failed (or skipped, or cut short) attempt."""

_PREFIXED: frozenset[str] = frozenset(
    {"timeout", "connect", "reset", "protocol", "status", "template", "context", "constraint"}
)
# attempts built with only ``error`` (as before ``kind`` existed): the runtime's own phrases
_PHRASES: dict[str, ErrorKind] = {
    "circuit open": "circuit_open",
    "rate limited": "rate_limited",
    "the engine was closed": "closed",
    "cancelled": "cancelled",
    "deadline": "deadline",
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
                detail = self.detail if self.detail is not None else _SAID.get(self.kind, self.kind)
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
    return error[len(prefix) :] if error.startswith(prefix) else error


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
class ReasoningBlock:
    """One block of a model's reasoning, as its provider returned it. ``text`` is the reasoning
    (empty for a redacted block or a bare signature); ``signature`` the opaque signature the
    provider wants back with it (Anthropic ``thinking.signature``, Gemini ``thoughtSignature``);
    ``redacted`` the encrypted data of an Anthropic ``redacted_thinking`` block; ``kind`` the wire
    format it came from (a signature is only valid at the kind, and model, that issued it)."""

    kind: str
    text: str = ""
    signature: str | None = None
    redacted: str | None = None

    def native(self) -> dict[str, Any]:
        """The block as Anthropic's own content block (``thinking`` or ``redacted_thinking``)."""
        if self.redacted is not None:
            return {"type": "redacted_thinking", "data": self.redacted}
        out: dict[str, Any] = {"type": "thinking", "thinking": self.text}
        if self.signature is not None:
            out["signature"] = self.signature
        return out


def reasoning_text(blocks: tuple[ReasoningBlock, ...]) -> str | None:
    """The text of ``blocks`` joined (as the stream's ``ReasoningDelta`` texts join); None if none."""
    return "".join(b.text for b in blocks) if blocks else None


@dataclass(frozen=True, slots=True)
class Response:
    """A routed request's answer. ``text`` is the answer only: the model's reasoning, when the
    provider returns it (Anthropic ``thinking`` / ``redacted_thinking`` blocks, OpenAI-compatible
    ``reasoning_content`` / ``reasoning``, Gemini ``thought`` parts and ``thoughtSignature``,
    Ollama ``message.thinking``), is in ``reasoning`` (its text) and ``reasoning_blocks`` (with
    the signatures needed to hand it back), never in ``text``.

    To continue the conversation, append ``message()``: the assistant message in the request's
    own fields (``engine.request.Message``), which each kind sends back as its API requires.
    Gemini: a block with a signature and no text carries the ``thoughtSignature`` of an answer
    part (the first function call's, else the text's).

    ``native`` is what of the provider's own answer a client of its wire format gets back as it
    came, decoded JSON (Anthropic: the message's ``id``, ``content`` with its server-tool blocks
    and citations, ``stop_reason``, ``stop_sequence`` and ``usage``); ``None`` for other kinds.
    Unlike ``raw`` it stays with the answer in the response cache and in a shared answer (whose
    copies share it: read it, never change it)."""

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
    reasoning: str | None = None
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    native: dict[str, Any] | None = field(default=None, repr=False)

    def message(self) -> dict[str, Any]:
        """The assistant message that hands this answer back in a following request: ``content``
        and ``tool_calls``; the reasoning as ``reasoning_content`` with Anthropic's
        ``reasoning_signature``, or, for several or redacted Anthropic blocks, as Anthropic's own
        blocks before the text; Gemini's signature as the first tool call's
        ``extra_content.google.thought_signature``."""
        out: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        calls: list[dict[str, Any]] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in self.tool_calls
        ]
        signed = [b for b in self.reasoning_blocks if b.kind == "anthropic"]
        if len(signed) > 1 or any(b.redacted is not None for b in signed):
            blocks = [b.native() for b in signed]
            out["content"] = blocks + ([{"type": "text", "text": self.text}] if self.text else [])
        elif self.reasoning:
            out["reasoning_content"] = self.reasoning
            if signed and signed[0].signature:
                out["reasoning_signature"] = signed[0].signature
        gemini = next(
            (b.signature for b in self.reasoning_blocks if b.kind == "gemini" and b.signature and not b.text),
            None,
        )
        if gemini is not None and calls:
            calls[0]["extra_content"] = {"google": {"thought_signature": gemini}}
        if calls:
            out["tool_calls"] = calls
        return out


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning, never part of the answer's text. ``signature`` (with
    empty ``text``) is the opaque signature that closes a reasoning block; ``redacted`` the data
    of a redacted block. ``Done`` carries the whole reasoning at the end."""

    text: str
    signature: str | None = None
    redacted: str | None = None
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Done:
    """The final stream event; ``reasoning`` and ``reasoning_blocks`` as in ``Response``."""

    provider: str
    model: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    attempts: tuple[Attempt, ...] = ()
    latency: float = 0.0
    ttft: float | None = None  # time to first token, seconds
    cached: bool = False
    reasoning: str | None = None
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    type: Literal["done"] = "done"


@dataclass(frozen=True, slots=True)
class NativeEvent:
    """A provider's own stream event that the unified events do not model, as it came
    (``data``, the decoded event; ``kind``, the wire format it is in), for a client that speaks
    that format: from Anthropic, the start, deltas and stop of a server-tool block
    (``server_tool_use``, ``web_search_tool_result``, ...) or a ``compaction`` block, a
    ``citations_delta``, the start of a text block that opens right after another one or
    carries citations, ``message_start`` (the message's id and input usage; it comes with the
    stream's first event, so first of all) and ``message_delta`` (the provider's own stop reason
    and usage). Its text is not in the ``TextDelta`` events; every other consumer may skip it."""

    kind: str
    data: dict[str, Any]
    type: Literal["native"] = "native"


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | NativeEvent | Done
