"""The request a caller routes: a pydantic ``Request`` or a plain dict, normalised to a dict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SAMPLE_REQUEST", "Message", "Request", "normalize_request"]


class Message(BaseModel):
    """An OpenAI-style chat message."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Any = None  # text, or a list of OpenAI content parts
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class Request(BaseModel):
    """An OpenAI-style chat request. Unknown keys are kept and reach templates as ``request.<key>``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="Requested model or route name, e.g. 'chat' or 'gpt-4o-mini'.")
    messages: list[Message] = Field(default_factory=list)
    system: str | None = Field(None, description="System prompt (also accepted as a system message).")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False


_KNOWN = frozenset(Request.model_fields)


def normalize_request(request: Request | dict[str, Any]) -> dict[str, Any]:
    """Return the request as a plain dict with ``model``, ``messages`` and ``metadata`` present.

    Dicts take a fast path (a few checks, no model construction); anything else is validated.
    """
    if isinstance(request, Request):
        return request.model_dump(exclude_none=True)
    if type(request) is dict:
        model = request.get("model")
        messages = request.get("messages", ())
        if isinstance(model, str) and type(messages) is list and all(
            type(m) is dict and "role" in m for m in messages
        ):
            if "metadata" not in request or "messages" not in request:
                request = {"messages": [], "metadata": {}, **request}
            return request
    return Request.model_validate(request).model_dump(exclude_none=True)


SAMPLE_REQUEST: dict[str, Any] = {
    "model": "sample",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say \"hi\" \\ and <b>bye</b>\n"},
    ],
    "temperature": 0.0,
    "max_tokens": 16,
    "stop": ["\n\n"],
    "tools": [{"type": "function", "function": {
        "name": "lookup", "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    }}],
    "metadata": {"sample": True},
}
