"""The contract of a provider kind: how a unified request becomes one wire format and back.

A kind turns the normalised request dict into the context its Jinja template renders, names the URL
and auth headers, and parses JSON responses and stream lines into the unified result types. Kinds
know nothing of retries, breakers or HTTP clients; the runtime drives them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from engine.result import (
    NativeEvent,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "DEFAULT_WIRE",
    "ERROR_TEXT_MAX",
    "OPENAI_ONLY",
    "ContextFn",
    "Kind",
    "Parsed",
    "Reasoning",
    "StreamParser",
    "WireError",
    "WireOptions",
    "error_text",
    "fast_loads",
    "loads",
    "unsent",
]


def _std_loads(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` (too-deep nesting included), so an
    upstream body can never escape as an untyped ``RecursionError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


try:
    import orjson
except ImportError:  # pragma: no cover - the serve extra installs orjson
    loads = _std_loads
    fast_loads: Callable[[str | bytes], Any] = _std_loads  # (the fastest at hand; see loads)
else:
    fast_loads = orjson.loads

    def loads(text: str | bytes) -> Any:
        """``json.loads``, every failure a ``ValueError`` (too-deep nesting included, so an
        upstream body never escapes as an untyped ``RecursionError``): orjson when installed
        (3x faster on a stream event), the standard library for what orjson refuses and it
        takes (``NaN``, lone surrogates, UTF-16 bytes), so both accept the same documents. An
        integer beyond 64 bits reads as a float (orjson's one different result)."""
        try:
            return fast_loads(text)
        except ValueError:
            return _std_loads(text)


ERROR_TEXT_MAX = 2000  # an error message is cut here; the runtime masks secrets, then cuts to 300


def error_text(data: Any) -> str:
    """The message of the usual error shapes: ``{"error": {"message"}}``, ``{"error": "..."}``,
    ``{"message": ...}``, ``{"detail": ...}`` (FastAPI servers), or a list holding one of them.
    Cut at ``ERROR_TEXT_MAX``, not shorter: secrets are masked after this, before the final cut."""
    if type(data) is list and data:
        data = data[0]
    if type(data) is dict:
        err = data.get("error")
        if type(err) is dict:
            msg = err.get("message")
            kind = err.get("type") or err.get("status")
            if msg and kind and type(kind) is str:
                return f"{kind}: {msg}"[:ERROR_TEXT_MAX]
            return str(msg or kind or err)[:ERROR_TEXT_MAX]
        if err:
            return str(err)[:ERROR_TEXT_MAX]
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])[:ERROR_TEXT_MAX]
    return str(data)[:ERROR_TEXT_MAX]


class WireError(Exception):
    """A response body that does not have the shape the kind expects (becomes a 'protocol' error)."""


@dataclass(slots=True)
class Parsed:
    """A parsed, non-streaming answer."""

    text: str
    finish_reason: str | None
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    model: str | None = None  # the model the provider says answered, when it says
    reasoning: tuple[ReasoningBlock, ...] = ()  # never part of ``text``
    native: dict[str, Any] | None = None  # ``Response.native``


class Reasoning:
    """The reasoning blocks of one stream, built up from its deltas as they are parsed (only
    streams that reason pay for it). A delta goes to the open block; ``close`` ends it."""

    __slots__ = ("_blocks", "_kind", "_signature", "_texts")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._blocks: list[ReasoningBlock] = []
        self._texts: list[str] = []
        self._signature: str | None = None

    def text(self, text: str) -> ReasoningDelta:
        self._texts.append(text)
        return ReasoningDelta(text)

    def sign(self, signature: str) -> ReasoningDelta:
        """The open block's signature; a signature ends its block."""
        self._signature = signature
        self.close(empty=True)
        return ReasoningDelta("", signature=signature)

    def redact(self, data: str) -> ReasoningDelta:
        self.close()
        self._blocks.append(ReasoningBlock(self._kind, redacted=data))
        return ReasoningDelta("", redacted=data)

    def close(self, empty: bool = False) -> None:
        """End the open block (kept if it has text, or ``empty`` is allowed: a bare signature)."""
        if self._texts or (empty and self._signature is not None):
            self._blocks.append(ReasoningBlock(self._kind, "".join(self._texts), self._signature))
        self._texts = []
        self._signature = None

    def blocks(self) -> tuple[ReasoningBlock, ...]:
        """Every block so far, the open one included."""
        if not self._texts:
            return tuple(self._blocks)
        last = ReasoningBlock(self._kind, "".join(self._texts), self._signature)
        return (*self._blocks, last)


class StreamParser(ABC):
    """Fed one decoded line at a time (SSE or NDJSON, as the kind speaks); yields unified deltas.

    After the stream ends, ``finish_reason`` and ``usage`` hold what the provider reported,
    ``reasoning`` the reasoning blocks its ``ReasoningDelta`` events carried, and ``done`` tells
    whether the provider's own end-of-stream marker was seen (a stream that ends without it was
    truncated).
    """

    kind = ""  # the kind's name, for the reasoning blocks

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage = Usage()
        self.done = False
        self.model: str | None = None
        self.thoughts = Reasoning(self.kind)

    @property
    def reasoning(self) -> tuple[ReasoningBlock, ...]:
        return self.thoughts.blocks()

    @abstractmethod
    def feed(self, line: str) -> list[TextDelta | ReasoningDelta | ToolCallDelta | NativeEvent]:
        """Parse one line; raise ``WireError`` on a malformed line or an in-band error event."""

    def lines(self, lines: list[str]) -> tuple[list[StreamEvent], WireError | None]:
        """The events of the lines of one network read (no line ends in them), and the
        ``WireError`` that stopped them: the events before it are still the caller's. Every
        line, also one after the end marker, is fed as ``feed`` would take it."""
        events: list[StreamEvent] = []
        feed = self.feed
        try:
            for line in lines:
                events += feed(line)
        except WireError as exc:
            return events, exc
        return events, None


@dataclass(frozen=True, slots=True)
class WireOptions:
    """Settings of one provider's (or one of its models') wire format, from routes.yaml.

    ``max_tokens_field`` (kind openai): the field the request's token limit goes out as; None
    chooses by model name (``max_completion_tokens`` for the o-series and gpt-5 reasoning models,
    which refuse ``max_tokens``). ``send_reasoning_content`` (kind openai): replay an assistant
    message's ``reasoning_content`` (vLLM, DeepSeek with tools); off, it is dropped, as DeepSeek
    refuses it on some models.
    """

    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    send_reasoning_content: bool = False


DEFAULT_WIRE = WireOptions()

# OpenAI request fields that only some kinds can send; each kind names those it maps
OPENAI_ONLY = (
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "service_tier",
    "store",
    "user",
    "prediction",
    "modalities",
    "audio",
    "verbosity",
    "web_search_options",
    "prompt_cache_key",
    "safety_identifier",
)


def unsent(request: dict[str, Any], kind: str, mapped: frozenset[str]) -> list[str]:
    """A note naming the OpenAI-only fields of ``request`` that ``kind`` does not send."""
    left = [k for k in OPENAI_ONLY if k not in mapped and request.get(k) is not None]
    return [f"not sent (no {kind} equivalent): {', '.join(left)}"] if left else []


ContextFn = Callable[[dict[str, Any], str, bool], dict[str, Any]]


class Kind(ABC):
    """One wire protocol. Instances are stateless singletons registered by ``name``.

    The unified request is OpenAI's Chat Completions request, plus what a conversation needs to
    hand a provider's reasoning back in a following turn:

    - an assistant message's ``reasoning_content: str`` (its reasoning text, as DeepSeek and vLLM
      send it) and ``reasoning_signature: str`` (Anthropic's ``thinking`` block signature; with
      it, the pair is replayed to Anthropic as a signed ``thinking`` block);
    - a tool call's ``extra_content: {"google": {"thought_signature": str}}`` (Gemini's
      ``thoughtSignature`` of that functionCall, spelled as Gemini's OpenAI endpoint spells it);
    - Anthropic-native ``thinking`` / ``redacted_thinking`` blocks in a list ``content``, which
      go to Anthropic as written.

    ``reasoning_effort`` (OpenAI's values: none, minimal, low, medium, high, xhigh) is mapped
    onto each kind's own control. What a kind cannot send as asked, it says in ``notes``
    (shown by ``engine plan``).

    The declaration (class attributes) is what the compile half reads from the registry: the
    schema's enum and descriptions, the default base URL, the default template, the hints.
    """

    name: ClassVar[str]
    description: ClassVar[str]  # one line for the schema and the reference
    default_base_url: ClassVar[str]  # a provider's base_url when routes.yaml writes none
    default_template: ClassVar[str]  # relative to the templates directory, e.g. "openai/chat.json.j2"
    stream_format: ClassVar[str]  # "sse" or "ndjson"
    # the provider settings of routes.yaml (WireOptions fields) this kind reads
    wire_keys: ClassVar[frozenset[str]] = frozenset()
    # vendors that speak this protocol, as people write them for a kind, and their base_url
    compatible: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def url(self, base_url: str, model: str, stream: bool) -> str:
        """The full URL of a chat call."""

    @abstractmethod
    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers that carry the key (and any fixed protocol headers such as anthropic-version)."""

    @abstractmethod
    def context(
        self, request: dict[str, Any], model: str, stream: bool, options: WireOptions = DEFAULT_WIRE
    ) -> dict[str, Any]:
        """The variables the kind's template renders; always includes ``request``, ``model``
        and ``stream``."""

    def notes(self, request: dict[str, Any], model: str, options: WireOptions = DEFAULT_WIRE) -> list[str]:
        """What ``context`` drops or changes in this request for ``model`` (for ``engine plan``;
        never called on the request path)."""
        return []

    def context_for(self, options_for: Callable[[str], WireOptions]) -> ContextFn:
        """``context`` with the options of the model being called (``options_for(model)``)."""
        context = self.context

        def bound(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
            return context(request, model, stream, options_for(model))

        return bound

    @abstractmethod
    def parse(self, data: Any) -> Parsed:
        """Parse a JSON (already decoded) non-streaming response; raise ``WireError`` if malformed."""

    @abstractmethod
    def stream_parser(self) -> StreamParser:
        """A fresh parser for one streaming response."""

    @abstractmethod
    def models_url(self, base_url: str) -> str:
        """The URL that lists the provider's models."""

    @abstractmethod
    def parse_models(self, data: Any) -> list[str]:
        """Model names from the listing response."""

    def request_headers(self, request: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """Protocol headers one request asks for (lower-cased names), replacing the fixed ones
        of that name: never credentials, never arbitrary client headers. Called per try, so it
        must be cheap; none by default."""
        return ()

    def count_url(self, base_url: str) -> str | None:
        """The URL of the provider's own token count of a request, or None when it has none."""
        return None

    def count_body(self, request: dict[str, Any], model: str) -> dict[str, Any]:
        """The body of a token count of ``request`` for ``model`` (kinds with a ``count_url``)."""
        raise NotImplementedError(f"{self.name} has no token count")

    def parse_count(self, data: Any) -> int:
        """The input tokens of a token count answer; ``WireError`` if malformed."""
        raise NotImplementedError(f"{self.name} has no token count")

    def error_message(self, data: Any) -> str:
        """A short message from an error body (never echoes request headers)."""
        return error_text(data)
