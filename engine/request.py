"""The request a caller routes (a plain dict or a pydantic ``Request``) in; a checked private copy
as a plain dict out, or a ``RequestError`` naming the bad field, before anything is sent."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import RequestError

__all__ = ["MAX_MODEL_LENGTH", "ROLES", "SAMPLE_REQUEST", "Message", "Request", "normalize_request"]

ROLES = ("system", "user", "assistant", "tool", "developer")  # as in ``Message.role``
MAX_MODEL_LENGTH = 256  # a longer model name is refused upstream, so it is refused here


class Message(BaseModel):
    """An OpenAI-style chat message.

    An assistant message may hand back the reasoning of the answer it was: ``reasoning_content``
    (the text) and ``reasoning_signature`` (Anthropic's signature of it); a tool call may carry
    ``extra_content: {"google": {"thought_signature": ...}}`` (Gemini). ``Response.message()``
    makes such a message from an answer.
    """

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Any = None  # text, or a list of OpenAI content parts
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning_signature: str | None = None


class Request(BaseModel):
    """An OpenAI-style chat request. Unknown keys are kept and reach templates as ``request.<key>``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="Requested model or route name, e.g. 'chat' or 'gpt-4o-mini'.")
    messages: list[Message] = Field(default_factory=list)
    system: str | None = Field(None, description="System prompt (also accepted as a system message).")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = Field(None, description="OpenAI's newer max_tokens.")
    reasoning_effort: str | None = Field(
        None,
        description="none, minimal, low, medium, high or "
        "xhigh; mapped onto each provider's thinking control.",
    )
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False


def normalize_request(request: Request | Mapping[str, Any]) -> dict[str, Any]:
    """Return the request as a new plain dict with ``model``, ``messages`` and ``metadata`` present,
    or raise ``RequestError`` naming the first bad field.

    One pass checks every field the engine or a provider reads (types; numbers finite and in
    range; known roles) and copies the containers a caller typically mutates (the dict, the
    messages list and each message, list content and its parts, ``metadata``, the ``stop``,
    ``tools`` and ``tool_calls`` lists): a caller changing its request after this cannot change
    what is sent, and the caller's objects are never changed. ``None`` means absent. Unknown keys
    pass unchecked (templates read them as ``request.<key>``).
    """
    source = request if type(request) is dict else _source(request)
    out: dict[str, Any] = {}
    for key, value in source.items():
        check = _CHECKS.get(key)
        if check is not None:
            if value is not None:
                value = check(value)
        elif type(key) is not str:
            raise RequestError("", f"keys must be strings, got {_got(key)}")
        out[key] = value
    if out.get("model") is None:
        raise RequestError("model", "missing")
    if out.get("messages") is None:
        out["messages"] = []
    if out.get("metadata") is None:
        out["metadata"] = {}
    return out


def _source(request: object) -> Mapping[str, Any]:
    if isinstance(request, Request):
        try:  # a model built with model_construct or assigned to afterwards is unchecked
            return request.model_dump(exclude_none=True, warnings=False)
        except (TypeError, ValueError) as exc:
            raise RequestError("", f"the Request cannot be read: {exc}") from None
    if isinstance(request, Mapping):
        return request
    raise RequestError("", f"expected a dict or an engine.Request, got {_got(request)}")


def _got(value: object) -> str:
    """``int 5``, ``str 'hot'`` (scalars, shortened) or just the type name."""
    name = type(value).__name__
    if isinstance(value, (str, int, float)):
        text = repr(value)
        return f"{name} {text if len(text) <= 40 else text[:37] + '...'}"
    return name


def _wrong(field: str, expected: str, value: object) -> RequestError:
    return RequestError(field, f"expected {expected}, got {_got(value)}")


def _is_list(value: object) -> bool:
    return type(value) is list or isinstance(value, (list, tuple))


# -- top-level fields: each takes the (non-None) value and returns what is kept --------------


def _model(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong("model", "a string", value)
    if not value:
        raise RequestError("model", "must not be empty")
    if len(value) > MAX_MODEL_LENGTH:
        raise RequestError(
            "model",
            f"is {len(value)} characters long; at most "
            f"{MAX_MODEL_LENGTH} (providers refuse longer model names)",
        )
    return value


def _messages(value: Any) -> list[dict[str, Any]]:
    if not _is_list(value):
        raise _wrong("messages", "a list of messages", value)
    return [_message(i, m) for i, m in enumerate(value)]


def _message(i: int, message: Any) -> dict[str, Any]:
    if type(message) is dict:
        m = message.copy()
    elif isinstance(message, Message):
        m = message.model_dump(exclude_none=True, warnings=False)
    elif isinstance(message, Mapping):
        m = dict(message)
    else:
        raise _wrong(f"messages[{i}]", "a message (a dict with a 'role')", message)
    role = m.get("role")
    if type(role) is not str or role not in _ROLES:
        _role(i, role)
    content = m.get("content")
    if content is not None and type(content) is not str:
        m["content"] = _content(i, content)
    if len(m) != 2 or "content" not in m:  # more than role and content: check the rest
        _message_extras(i, m)
    return m


def _role(i: int, role: Any) -> None:
    if isinstance(role, str) and role in _ROLES:  # a str subclass, e.g. a StrEnum member
        return
    reason = (
        "missing"
        if role is None
        else f"unknown role {role!r}"
        if isinstance(role, str)
        else f"expected a string, got {_got(role)}"
    )
    raise RequestError(f"messages[{i}].role", f"{reason} (expected one of: {', '.join(ROLES)})")


def _message_extras(i: int, m: dict[str, Any]) -> None:
    for key in _MESSAGE_TEXT:
        text = m.get(key)
        if text is not None and not isinstance(text, str):
            raise _wrong(f"messages[{i}].{key}", "a string", text)
    calls = m.get("tool_calls")
    if calls is not None:
        m["tool_calls"] = _tool_calls(f"messages[{i}].tool_calls", calls)


def _content(i: int, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if not _is_list(value):
        raise _wrong(f"messages[{i}].content", "a string or a list of content parts", value)
    parts = []
    for j, part in enumerate(value):
        if type(part) is dict:
            p = part.copy()
        elif isinstance(part, Mapping):
            p = dict(part)
        else:
            raise _wrong(f"messages[{i}].content[{j}]", "a content part (a dict with a 'type')", part)
        kind = p.get("type")
        if type(kind) is not str and not isinstance(kind, str):
            field = f"messages[{i}].content[{j}].type"
            raise RequestError(field, "missing") if kind is None else _wrong(field, "a string", kind)
        if kind == "text" and not isinstance(p.get("text"), str):
            raise _wrong(f"messages[{i}].content[{j}].text", "a string", p.get("text"))
        parts.append(p)
    return parts


def _tool_calls(field: str, value: Any) -> list[dict[str, Any]]:
    calls = _dicts(field, value, "a list of tool calls")
    for j, call in enumerate(calls):
        fn = call.get("function")
        if fn is not None and not isinstance(fn, dict):
            raise _wrong(f"{field}[{j}].function", "a dict", fn)
        for key, where in (("id", call), ("name", fn or {})):  # (arguments: a string or an object)
            text = where.get(key)
            if text is not None and not isinstance(text, str):
                name = f"{field}[{j}].{'' if where is call else 'function.'}{key}"
                raise _wrong(name, "a string", text)
        extra = call.get("extra_content")
        if extra is not None:
            _extra_content(f"{field}[{j}].extra_content", extra)
    return calls


def _extra_content(field: str, extra: Any) -> None:
    """``{"google": {"thought_signature": str}}``: Gemini's signature of one function call."""
    if not isinstance(extra, dict):
        raise _wrong(field, "a dict", extra)
    google = extra.get("google")
    if google is None:
        return
    if not isinstance(google, dict):
        raise _wrong(f"{field}.google", "a dict", google)
    signature = google.get("thought_signature")
    if signature is not None and not isinstance(signature, str):
        raise _wrong(f"{field}.google.thought_signature", "a string", signature)


def _dicts(field: str, value: Any, expected: str) -> list[dict[str, Any]]:
    if not _is_list(value):
        raise _wrong(field, expected, value)
    for j, item in enumerate(value):
        if not isinstance(item, dict):
            raise _wrong(f"{field}[{j}]", "a dict", item)
    return list(value)


def _number(field: str, value: object) -> float:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RequestError(field, f"must be a finite number, got {value!r}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _wrong(field, "a number", value)


def _temperature(value: object) -> float:
    number = _number("temperature", value)
    if number < 0:
        raise RequestError("temperature", f"must be at least 0, got {number!r}")
    return number


def _max_tokens(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(field, "an integer", value)
    if value < 1:
        raise RequestError(field, f"must be at least 1, got {value!r}")
    return value


def _string(field: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _wrong(field, "a string", value)
        return value

    return check


def _stop(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if not _is_list(value):
        raise _wrong("stop", "a string or a list of strings", value)
    for j, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(f"stop[{j}]", "a string", item)
    return list(value)


def _tools(value: Any) -> list[dict[str, Any]]:
    """Tools; a ``function`` tool's ``function`` a dict with a string ``name`` (a tool without one,
    such as an Anthropic server tool, goes as written)."""
    tools = _dicts("tools", value, "a list of tools")
    for j, tool in enumerate(tools):
        if "function" in tool:
            _function(f"tools[{j}].function", tool["function"])
    return tools


def _function(field: str, fn: Any) -> None:
    if not isinstance(fn, dict):
        raise _wrong(field, "a dict", fn)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise (
            RequestError(f"{field}.name", "missing")
            if name is None
            else _wrong(f"{field}.name", "a name", name)
        )


def _tool_choice(value: Any) -> str | dict[str, Any]:
    """``none``, ``auto``, ``required``, or a dict (OpenAI's naming a function, checked; another
    shape, such as Anthropic's, as written)."""
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise RequestError(
                "tool_choice", f"unknown choice {value[:40]!r} (expected one of: {', '.join(_TOOL_CHOICES)})"
            )
        return value
    if not isinstance(value, dict):
        raise _wrong("tool_choice", "a string or a dict", value)
    if "function" in value:
        _function("tool_choice.function", value["function"])
    return value


def _response_format(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong("response_format", "a dict", value)
    kind = value.get("type")
    if kind is not None and not isinstance(kind, str):
        raise _wrong("response_format.type", "a string", kind)
    if kind == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise _wrong("response_format.json_schema", "a dict (with the schema)", value.get("json_schema"))
    return value


def _metadata(value: Any) -> dict[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _wrong("metadata", "a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise RequestError("metadata", f"keys must be strings, got {_got(key)}")
    return dict(value)


def _stream(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong("stream", "true or false", value)
    return value


_ROLES = frozenset(ROLES)
_TOOL_CHOICES = ("none", "auto", "required")
_MESSAGE_TEXT = ("name", "tool_call_id", "reasoning_content", "reasoning_signature")
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "model": _model,
    "messages": _messages,
    "system": _string("system"),
    "temperature": _temperature,
    "top_p": partial(_number, "top_p"),
    "max_tokens": partial(_max_tokens, "max_tokens"),
    "max_completion_tokens": partial(_max_tokens, "max_completion_tokens"),
    "reasoning_effort": _string("reasoning_effort"),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "metadata": _metadata,
    "stream": _stream,
}


SAMPLE_REQUEST: dict[str, Any] = {
    "model": "sample",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": 'Say "hi" \\ and <b>bye</b>\n'},
    ],
    "temperature": 0.0,
    "max_tokens": 16,
    "stop": ["\n\n"],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a thing up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            },
        }
    ],
    "metadata": {"sample": True},
}
