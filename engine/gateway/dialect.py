"""What a client API (OpenAI Chat Completions, Anthropic Messages) must say to sit in front of the
routing graph: its requests read into the engine's own request, the engine's answers, stream
events and errors written back in the client's exact shapes. The server (engine/gateway/app.py)
knows nothing of either shape; each dialect is one module of this package."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import Any

from engine.errors import RouteError
from engine.result import Response, StreamEvent

__all__ = ["Dialect"]


class Dialect(ABC):
    """One client API. Instances are stateless and shared by every request."""

    name: str  # "openai" | "anthropic": the dialect of the endpoint's errors
    keepalive: bytes = b": ping\n\n"  # an SSE comment, sent while a stream waits for its first event

    @abstractmethod
    def parse(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """The client's JSON body (already decoded; any JSON value) and its lower-cased headers
        as the engine's request dict (``engine.request`` fields plus what templates read).
        Raises ``engine.errors.RequestError`` naming the bad field in the client's own terms.
        Never takes a URL, a credential or a provider choice from the client."""

    @abstractmethod
    def answer(self, response: Response, request: Mapping[str, Any]) -> dict[str, Any]:
        """A whole answer (``stream: false``) as the client API's JSON body; ``request`` is what
        ``parse`` returned (the requested model, options such as ``include_usage``)."""

    @abstractmethod
    def stream(self, events: AsyncIterator[StreamEvent], request: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The SSE frames of a stream, each yielded as soon as its event arrives (never
        buffered). A ``RouteError`` raised by ``events`` after the first frame ends the stream
        with the dialect's in-stream error frame (never a clean end); one raised before any
        frame propagates, so the server can answer it with a status."""

    @abstractmethod
    def error(
        self, status: int, message: str, *, kind: str | None = None, relayed: bool = False
    ) -> dict[str, Any]:
        """The JSON error body for ``status`` (``kind``: the dialect's error type when the
        server knows a better one than the status implies; ``relayed``: a provider's own
        refusal, which the codes naming the gateway's own refusals do not describe)."""

    @abstractmethod
    def stream_error(self, error: RouteError | Exception) -> bytes:
        """The in-stream error frame for an error after the stream began."""
