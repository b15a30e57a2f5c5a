"""An Anthropic Messages request body in, the engine's request out: the unified (OpenAI-style)
translation every kind can send, with the body's own system, turns, tools, tool_choice, thinking,
beta flags and other fields kept as the request's Anthropic-native part
(``engine.providers.native``), which the kind ``anthropic`` sends as written.

Bad input raises ``RequestError`` naming the field as Anthropic does (``messages.0.content.1``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from engine.errors import RequestError
from engine.providers.native import BETA, KEY, VERSION

__all__ = ["read_request"]

# top-level fields this module reads; every other goes to a provider of kind anthropic only
_READ: Final = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
    }
)
_CHOICES: Final = {"auto": "auto", "any": "required", "none": "none"}


def _wrong(field: str, expected: str, value: object) -> RequestError:
    return RequestError(field, f"Input should be {expected}, got {type(value).__name__}")


def _dict(field: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise _wrong(field, "an object", value)
    return value


def _str(field: str, value: Any) -> str:
    if type(value) is not str:
        raise _wrong(field, "a string", value)
    return value


def read_request(body: Any, headers: Mapping[str, str], *, count: bool = False) -> dict[str, Any]:
    """The engine's request for an Anthropic Messages ``body`` and the client's headers
    (``count``: a ``count_tokens`` body, which has no ``max_tokens``)."""
    body = _dict("", body) if type(body) is dict else _refuse_body(body)
    for key in ("model", "messages") if count else ("model", "max_tokens", "messages"):
        if body.get(key) is None:
            raise RequestError(key, "Field required")
    out: dict[str, Any] = {"model": _str("model", body["model"])}
    if body.get("max_tokens") is not None:
        out["max_tokens"] = _limit(body["max_tokens"])
    system = body.get("system")
    if system is not None:
        out["system"] = _system_text(system)
    out["messages"] = _messages(body["messages"])
    _sampling(body, out)
    native = _native(body, headers)
    _tools(body, out)
    output = _output_format(body)
    if output is not None:
        out["response_format"] = output
    _thinking(body.get("thinking"))
    metadata = body.get("metadata")
    out["metadata"] = _metadata(metadata) if metadata is not None else {}
    user = out["metadata"].get("user_id")
    if user is not None:
        out["user"] = _str("metadata.user_id", user)
    if body.get("stream") is not None:
        if type(body["stream"]) is not bool:
            raise _wrong("stream", "a valid boolean", body["stream"])
        out["stream"] = body["stream"]
    out[KEY] = native
    return out


def _refuse_body(body: Any) -> dict[str, Any]:
    raise RequestError("", f"the request body must be a JSON object, got {type(body).__name__}")


def _limit(value: Any) -> int:
    if type(value) is not int:
        raise _wrong("max_tokens", "a valid integer", value)
    if value < 1:
        raise RequestError("max_tokens", "Input should be greater than or equal to 1")
    return value


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is None:
            continue
        if type(value) not in (int, float):
            raise _wrong(key, "a valid number", value)
        if not 0 <= value <= 1:
            raise RequestError(key, "Input should be between 0 and 1")
        out[key] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if type(top_k) is not int or top_k < 0:
            raise _wrong("top_k", "a non-negative integer", top_k)
        out["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if type(stops) is not list:
            raise _wrong("stop_sequences", "a valid list", stops)
        out["stop"] = [_str(f"stop_sequences.{i}", s) for i, s in enumerate(stops)]


def _native(body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """The body's own fields the kind anthropic sends as written, and the client's headers."""
    part: dict[str, Any] = {"messages": body["messages"]}
    for key in ("system", "tools", "tool_choice", "thinking"):
        if body.get(key) is not None:
            part[key] = body[key]
    # every other top-level field (service_tier, container, context_management, ...) goes to
    # Anthropic as written, which refuses what it does not know: new fields work at once
    extra = {k: v for k, v in body.items() if k not in _READ and v is not None}
    if extra:
        part["extra"] = extra
    beta = headers.get("anthropic-beta")
    if beta:
        flags = [f.strip() for f in beta.split(",") if f.strip()]
        for flag in flags:
            if not BETA.fullmatch(flag):
                raise RequestError("anthropic-beta", f"malformed beta flag {flag[:40]!r}")
        part["beta"] = flags
    version = headers.get("anthropic-version")
    if version:
        if not VERSION.fullmatch(version):
            raise RequestError("anthropic-version", f"{version[:40]!r} is not a valid version")
        part["version"] = version
    return part


def _metadata(value: Any) -> dict[str, Any]:
    """The body's metadata: what routes match on (Anthropic's ``user_id`` among it)."""
    metadata = _dict("metadata", value)
    for key in metadata:
        if type(key) is not str:
            raise RequestError("metadata", "keys must be strings")
    return dict(metadata)


# -- system and turns -----------------------------------------------------------------------------


def _system_text(system: Any) -> str:
    if type(system) is str:
        return system
    if type(system) is not list:
        raise _wrong("system", "a string or a list of text blocks", system)
    texts = []
    for i, block in enumerate(system):
        block = _dict(f"system.{i}", block)
        if block.get("type") != "text":
            raise RequestError(f"system.{i}.type", "Input should be 'text'")
        texts.append(_str(f"system.{i}.text", block.get("text")))
    return "\n\n".join(texts)


def _messages(value: Any) -> list[dict[str, Any]]:
    if type(value) is not list:
        raise _wrong("messages", "a valid list", value)
    if not value:  # (Anthropic's words; count_tokens too)
        raise RequestError("messages", "at least one message is required")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(value):
        turn = _dict(f"messages.{i}", raw)
        role = turn.get("role")
        if role not in ("user", "assistant"):
            raise RequestError(f"messages.{i}.role", "Input should be 'user' or 'assistant'")
        content = turn.get("content")
        if content is None:
            raise RequestError(f"messages.{i}.content", "Field required")
        if type(content) is str:
            out.append({"role": role, "content": content})
        elif type(content) is list:
            blocks = [_dict(f"messages.{i}.content.{j}", b) for j, b in enumerate(content)]
            out += _user(i, blocks) if role == "user" else [_assistant(i, blocks)]
        else:
            raise _wrong(f"messages.{i}.content", "a string or a list of content blocks", content)
    return out


def _user(i: int, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user turn: its tool results as tool messages first (OpenAI's order), then its parts."""
    results = []
    parts = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        if block.get("type") == "tool_result":
            results.append(_tool_result(where, block))
        else:
            part = _part(where, block)
            if part is not None:
                parts.append(part)
    return results + ([{"role": "user", "content": parts}] if parts or not results else [])


def _tool_result(where: str, block: dict[str, Any]) -> dict[str, Any]:
    ref = _str(f"{where}.tool_use_id", block.get("tool_use_id"))
    content = block.get("content")
    if content is None or type(content) is str:
        text = content or ""
    elif type(content) is list:
        parts = [
            _part(f"{where}.content.{k}", _dict(f"{where}.content.{k}", b)) for k, b in enumerate(content)
        ]
        text = "\n".join(p["text"] for p in parts if p is not None and p.get("type") == "text")
    else:
        raise _wrong(f"{where}.content", "a string or a list of content blocks", content)
    is_error = block.get("is_error")
    if is_error is not None and type(is_error) is not bool:
        raise _wrong(f"{where}.is_error", "a valid boolean", is_error)
    return {"role": "tool", "tool_call_id": ref, "content": text}


def _part(where: str, block: dict[str, Any]) -> dict[str, Any] | None:
    """One user content block as an OpenAI content part (None: a block no part can carry)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _str(f"{where}.text", block.get("text"))}
    if kind in ("image", "document"):
        return _media(where, kind, _dict(f"{where}.source", block.get("source")))
    if kind in ("thinking", "redacted_thinking", "tool_use"):
        raise RequestError(f"{where}.type", f"a {kind} block belongs in an assistant turn")
    if type(kind) is not str:
        raise RequestError(f"{where}.type", "Field required")
    return None  # search_result, server tool results: Anthropic-native only


def _media(where: str, kind: str, source: dict[str, Any]) -> dict[str, Any] | None:
    stype = source.get("type")
    if stype == "base64":
        media = _str(f"{where}.source.media_type", source.get("media_type"))
        data = _str(f"{where}.source.data", source.get("data"))
        url = f"data:{media};base64,{data}"
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "file", "file": {"file_data": url}}
    if stype == "url":
        url = _str(f"{where}.source.url", source.get("url"))
        return {"type": "image_url", "image_url": {"url": url}} if kind == "image" else None
    if stype == "text" and kind == "document":
        return {"type": "text", "text": _str(f"{where}.source.data", source.get("data"))}
    if stype in ("file", "content"):
        return None  # Files API ids and nested content: Anthropic-native only
    raise RequestError(f"{where}.source.type", "Input should be 'base64', 'url', 'text', 'content' or 'file'")


def _assistant(i: int, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """An assistant turn: its text, its tool_use blocks as tool calls, its first signed
    thinking block as reasoning_content with reasoning_signature."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "text":
            texts.append(_str(f"{where}.text", block.get("text")))
        elif kind == "tool_use":
            calls.append(_tool_use(where, block))
        elif kind == "thinking":
            _str(f"{where}.thinking", block.get("thinking"))
            thoughts.append(block)
        elif kind in ("tool_result", "image", "document"):
            raise RequestError(f"{where}.type", f"a {kind} block belongs in a user turn")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    if thoughts:
        out["reasoning_content"] = "".join(t["thinking"] for t in thoughts)
        signature = thoughts[0].get("signature")
        if type(signature) is str and signature:
            out["reasoning_signature"] = signature
    return out


def _tool_use(where: str, block: dict[str, Any]) -> dict[str, Any]:
    name = _str(f"{where}.name", block.get("name"))
    ident = _str(f"{where}.id", block.get("id"))
    arguments = json.dumps(_dict(f"{where}.input", block.get("input", {})), ensure_ascii=False)
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- tools and thinking ---------------------------------------------------------------------------


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Custom tools as OpenAI function tools (server tools are Anthropic-native only); the
    tool_choice as OpenAI's."""
    tools = body.get("tools")
    if tools is not None:
        if type(tools) is not list:
            raise _wrong("tools", "a valid list", tools)
        functions = [_function(i, _dict(f"tools.{i}", t)) for i, t in enumerate(tools)]
        out["tools"] = [f for f in functions if f is not None]
    choice = body.get("tool_choice")
    if choice is None:
        return
    choice = _dict("tool_choice", choice)
    kind = choice.get("type")
    if kind == "tool":
        name = _str("tool_choice.name", choice.get("name"))
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in _CHOICES:
        out["tool_choice"] = _CHOICES[kind]
    else:
        raise RequestError("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def _function(i: int, tool: dict[str, Any]) -> dict[str, Any] | None:
    if tool.get("type", "custom") != "custom":
        return None  # a server tool (web_search_..., bash_...): Anthropic only
    name = _str(f"tools.{i}.name", tool.get("name"))
    schema = _dict(f"tools.{i}.input_schema", tool.get("input_schema"))
    fn: dict[str, Any] = {"name": name, "parameters": schema}
    if tool.get("description") is not None:
        fn["description"] = _str(f"tools.{i}.description", tool["description"])
    return {"type": "function", "function": fn}


def _output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured output (``output_config.format``, or the beta's ``output_format``) as the
    unified ``response_format`` json_schema, so every kind is asked for it (kind anthropic gets
    the body's own fields as written). Not ``strict``: a schema Anthropic takes may have optional
    properties, which OpenAI's strict mode refuses."""
    config = body.get("output_config")
    fmt = _dict("output_config", config).get("format") if config is not None else None
    where = "output_config.format"
    if fmt is None:
        fmt, where = body.get("output_format"), "output_format"
    if fmt is None:
        return None
    fmt = _dict(where, fmt)
    if fmt.get("type") != "json_schema":
        raise RequestError(f"{where}.type", "Input should be 'json_schema'")
    schema = _dict(f"{where}.schema", fmt.get("schema"))
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _thinking(value: Any) -> None:
    """Check ``thinking``; it travels in the native part only (the kind anthropic sends it).
    Other kinds do not get it as reasoning_effort: OpenAI refuses that on models that do not
    reason, and a route cannot know the model the client meant to think."""
    if value is None:
        return
    thinking = _dict("thinking", value)
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if type(budget) is not int:
            raise _wrong("thinking.budget_tokens", "a valid integer", budget)
        if budget < 1024:
            raise RequestError("thinking.budget_tokens", "Input should be greater than or equal to 1024")
    elif kind not in ("adaptive", "disabled"):
        raise RequestError("thinking.type", "Input should be 'enabled', 'adaptive' or 'disabled'")
