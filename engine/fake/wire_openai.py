"""A Chat Completions request body goes in (checked as strictly as OpenAI checks it); the
``chat.completion`` answer, its ``chat.completion.chunk`` stream, OpenAI's error bodies and the model
listing come out, with the fields and field order the real API sends.

Reasoning models (the o1, o3, o4-mini and gpt-5 families) refuse ``max_tokens`` (they take
``max_completion_tokens``) and sampling settings other than the defaults, and report the reasoning
they did as ``usage.completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, words
from engine.fake.wire import SLOT, Wire, dumps, jtype, opt_int, repeat, stops, text, typecheck, user

__all__ = ["OpenAI", "is_reasoning"]

_FIELDS = {
    "model": "string",
    "messages": "array",
    "max_tokens": "integer",
    "max_completion_tokens": "integer",
    "n": "integer",
    "seed": "integer",
    "top_logprobs": "integer",
    "temperature": "number",
    "top_p": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stream": "boolean",
    "logprobs": "boolean",
    "parallel_tool_calls": "boolean",
    "store": "boolean",
    "stop": "string|array",
    "tools": "array",
    "tool_choice": "string|object",
    "stream_options": "object",
    "response_format": "object",
    "user": "string",
    "reasoning_effort": "string",
    "service_tier": "string",
    "prompt_cache_key": "string",
    "prompt_cache_retention": "string",
    "safety_identifier": "string",
    "verbosity": "string",
    "metadata": "object",
    "logit_bias": "object",
    "audio": "object",
    "prediction": "object",
    "web_search_options": "object",
    "modalities": "array",
    "functions": "array",
    "function_call": "string|object",
}
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_PARTS = ("text", "image_url", "input_audio", "refusal", "audio", "file")
_TIERS = ("auto", "default", "flex", "scale", "priority")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")
_REASONING = re.compile(r"^(?:o1|o3|o4-mini|gpt-5)(?:$|[-.])")
_NO_SYSTEM = re.compile(r"^o1-(?:mini|preview)")  # the first o1 models take no system messages
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_A = {
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def is_reasoning(model: str) -> bool:
    """True for the o-series and gpt-5 reasoning models (not gpt-5-chat, a chat model)."""
    name = model.rsplit("/", 1)[-1]
    return bool(_REASONING.match(name)) and "-chat" not in name


def _bad(message: str, param: str | None = None, code: str | None = None) -> BadRequest:
    return BadRequest(message, param=param, code=code)


def _missing(param: str) -> BadRequest:
    return _bad(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _wrong_type(param: str, expected: str, value: Any) -> BadRequest:
    return _bad(
        f"Invalid type for '{param}': expected {_A[expected]}, but got {_A[jtype(value)]} instead.",
        param,
        "invalid_type",
    )


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> BadRequest:
    listed = ", ".join(f"'{a}'" for a in allowed[:-1]) + f", and '{allowed[-1]}'"
    return _bad(f"Invalid value: '{value}'. Supported values are: {listed}.", param, "invalid_value")


def _empty(param: str) -> BadRequest:
    return _bad(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got "
        "an empty array instead.",
        param,
        "empty_array",
    )


def _check(body: dict[str, Any]) -> None:
    """Raise what OpenAI answers a body it refuses, in the order it checks."""
    for key in body:
        if key not in _FIELDS:
            raise _bad(f"Unrecognized request argument supplied: {key}")
    if not isinstance(body.get("model"), str):
        raise _bad("you must provide a model parameter")
    if "messages" not in body:
        raise _missing("messages")
    typecheck(body, _FIELDS, _wrong_type)
    if not body["messages"]:
        raise _empty("messages")
    _check_messages(body["messages"])
    _check_tools(body)
    _check_format(body.get("response_format"))
    _check_ranges(body)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    if body.get("service_tier") is not None and body["service_tier"] not in _TIERS:
        raise _invalid_value("service_tier", body["service_tier"], _TIERS)
    _check_model(body)


def _check_ranges(body: dict[str, Any]) -> None:
    """Raise what OpenAI answers a number out of its range or a ``stop`` list too long."""
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(key)
        if value is not None and value > high:
            raise _bad(
                f"Invalid '{key}': decimal above maximum value. Expected a value <= {high}, "
                f"but got {value} instead.",
                key,
                "decimal_above_max_value",
            )
        if value is not None and value < low:
            raise _bad(
                f"Invalid '{key}': decimal below minimum value. Expected a value >= {low}, "
                f"but got {value} instead.",
                key,
                "decimal_below_min_value",
            )
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(key)
        if value is not None and value < 1:
            raise _bad(
                f"Invalid '{key}': integer below minimum value. Expected a value >= 1, but "
                f"got {value} instead.",
                key,
                "integer_below_min_value",
            )
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        raise _bad(
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but "
            f"got an array with length {len(stop)} instead.",
            "stop",
            "array_above_max_length",
        )


def _check_messages(msgs: list[Any]) -> None:
    pending: set[str] = set()  # tool call ids still waiting for their tool message
    pending_at = 0
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _wrong_type(where, "object", m)
        role = m.get("role")
        if role is None:
            raise _missing(where + ".role")
        if role not in _ROLES:
            raise _invalid_value(where + ".role", role, _ROLES)
        if pending and role != "tool":
            raise _unanswered(pending, pending_at)
        content = m.get("content")
        if content is None and role != "assistant":
            raise _missing(where + ".content")
        if content is not None and not isinstance(content, str | list):
            raise _wrong_type(where + ".content", "string", content)
        for j, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in _PARTS:
                raise _invalid_value(f"{where}.content[{j}].type", kind, _PARTS)
        if role == "assistant":
            calls = m.get("tool_calls") or []
            pending = {c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)}
            pending_at = i
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _missing(where + ".tool_call_id")
            if call_id not in pending:
                raise _bad(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.discard(call_id)
    if pending:
        raise _unanswered(pending, pending_at)


def _unanswered(pending: set[str], at: int) -> BadRequest:
    return _bad(
        "An assistant message with 'tool_calls' must be followed by tool messages "
        "responding to each 'tool_call_id'. The following tool_call_ids did not have "
        f"response messages: {', '.join(sorted(pending))}",
        f"messages.[{at}].role",
    )


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        for key in ("tool_choice", "parallel_tool_calls"):
            if body.get(key) is not None:
                raise _bad(
                    f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified.", key
                )
        return
    if not tools:
        raise _empty("tools")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "object", tool)
        if "type" not in tool:
            raise _missing(where + ".type")
        if tool["type"] != "function":
            continue  # custom tools
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise _missing(where + ".function")
        name = fn.get("name")
        if not isinstance(name, str):
            raise _missing(where + ".function.name")
        if not _TOOL_NAME.match(name):
            raise _bad(
                f"Invalid '{where}.function.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                where + ".function.name",
                "invalid_value",
            )
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise _wrong_type(where + ".function.parameters", "object", fn["parameters"])
    _check_choice(body.get("tool_choice"), {t["function"]["name"] for t in tools if t["type"] == "function"})


def _check_choice(choice: Any, names: set[str]) -> None:
    """``none``, ``auto``, ``required``, or an object naming one of the request's functions."""
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _CHOICES:
            raise _invalid_value("tool_choice", choice, _CHOICES)
        return
    kind = choice.get("type")
    if kind is None:
        raise _missing("tool_choice.type")
    if kind != "function":
        return  # allowed_tools, custom: as OpenAI documents them, not checked further
    fn = choice.get("function")
    if not isinstance(fn, dict):
        raise _missing("tool_choice.function")
    name = fn.get("name")
    if not isinstance(name, str):
        raise _missing("tool_choice.function.name")
    if name not in names:
        raise _bad(
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in the "
            "'tools' parameter.",
            "tool_choice",
        )


def _check_format(fmt: Any) -> None:
    """``text``, ``json_object`` or ``json_schema`` (with a named schema)."""
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in _FORMATS:
        raise _invalid_value("response_format.type", kind, _FORMATS)
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict):
            raise _missing("response_format.json_schema")
        if not isinstance(schema.get("name"), str):
            raise _missing("response_format.json_schema.name")


def _check_model(body: dict[str, Any]) -> None:
    model = body["model"]
    effort = body.get("reasoning_effort")
    if not is_reasoning(model):
        if effort is not None:
            raise _unsupported("reasoning_effort")
        return
    if body.get("max_tokens") is not None:
        raise _bad(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    for key, default in (("temperature", 1), ("top_p", 1), ("presence_penalty", 0), ("frequency_penalty", 0)):
        value = body.get(key)
        if value is not None and value != default:
            raise _bad(
                f"Unsupported value: '{key}' does not support {value} with this model. Only "
                f"the default ({default}) value is supported.",
                key,
                "unsupported_value",
            )
    for key in ("logprobs", "top_logprobs", "logit_bias"):
        if body.get(key):
            raise _unsupported(key)
    if effort is not None and effort not in _EFFORTS:
        raise _invalid_value("reasoning_effort", effort, _EFFORTS)
    if _NO_SYSTEM.match(model):
        for i, m in enumerate(body["messages"]):
            if m.get("role") in ("system", "developer"):
                raise _bad(
                    f"Unsupported value: 'messages[{i}].role' does not support "
                    f"'{m['role']}' with this model.",
                    f"messages[{i}].role",
                    "unsupported_value",
                )


def _output(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema the reply fits: json_schema's own, json_object's ``{"echo": text}``."""
    kind = fmt.get("type") if fmt is not None else None
    if kind == "json_schema":
        schema = fmt["json_schema"].get("schema") if fmt is not None else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    if kind == "json_object":
        return {"type": "object", "properties": {"echo": {"type": "string"}}}
    return None


def _unsupported(key: str) -> BadRequest:
    return _bad(
        f"Unsupported parameter: '{key}' is not supported with this model.", key, "unsupported_parameter"
    )


class OpenAI(Wire):
    name = "openai"
    base_path = "/v1"
    default_models = ("gpt-4o-mini", "gpt-4o")
    _TYPES: ClassVar[dict[int, str]] = {401: "invalid_request_error", 429: "requests"}
    _CODES: ClassVar[dict[int, str]] = {
        401: "invalid_api_key",
        404: "model_not_found",
        429: "rate_limit_exceeded",
    }
    _FINISH: ClassVar[dict[str, str]] = {
        "length": "length",
        "tool": "tool_calls",
        "refusal": "content_filter",
    }

    def route(self, method: str, path: str, headers: Any) -> tuple[str, str | None] | None:
        if method == "POST" and path.endswith("/chat/completions"):
            return "chat", None
        if method == "GET" and path.endswith("/models"):  # the registry asks this format last
            return "models", None
        return None

    def parse(self, body: Any, model: str | None) -> Chat:
        _check(body)
        msgs = body["messages"]
        chat = Chat("openai", body["model"], stream=bool(body.get("stream")))
        chat.prompt_tokens = sum(words(text(m.get("content"))) for m in msgs)
        if msgs[-1].get("role") == "tool":
            chat.tool_result = text(msgs[-1].get("content"))
        for m in reversed(msgs):
            if m.get("role") == "user":
                user(chat, text(m.get("content")))
                break
        limit = body.get("max_completion_tokens")
        chat.max_tokens = opt_int(limit if limit is not None else body.get("max_tokens"))
        chat.stop = stops(body.get("stop"))
        if body.get("tool_choice") != "none":
            fns = [t["function"] for t in body.get("tools") or () if t.get("type") == "function"]
            chat.tools = tuple(fn["name"] for fn in fns)
            chat.schemas = {fn["name"]: fn.get("parameters") for fn in fns}
            choice = body.get("tool_choice")
            if choice == "required":
                chat.forced = ""
            elif isinstance(choice, dict) and choice.get("type") == "function":
                chat.forced = choice["function"]["name"]
        chat.output = _output(body.get("response_format"))
        opts = body.get("stream_options") or {}
        chat.include_usage = opts.get("include_usage") is True
        chat.thinking = is_reasoning(chat.model)
        chat.show_thinking = False  # chat completions never show the reasoning, only count it
        tier = body.get("service_tier")
        chat.opts = {
            "service_tier": tier if tier in ("flex", "scale", "priority") else "default",
            "obfuscation": opts.get("include_obfuscation") is not False,
        }
        return chat

    def error(self, status: int, message: str, rid: str = "") -> dict[str, Any]:
        kind = self._TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": self._CODES.get(status)}}

    def refuse(self, exc: BadRequest, rid: str = "") -> dict[str, Any]:
        body = self.error(exc.status, exc.message, rid)
        body["error"]["param"] = exc.param
        if exc.status == 400:
            body["error"]["code"] = exc.code
        return body

    def auth_failure(self, headers: Any, missing: bool) -> BadRequest:
        if missing:
            return BadRequest(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                status=401,
            )
        return BadRequest(
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            status=401,
        )

    def headers(self, rid: str) -> dict[str, str]:
        return {"x-request-id": "req_" + rid}

    def _usage(self, ans: Answer) -> dict[str, Any]:
        completion = ans.output_tokens + ans.thinking_tokens
        return {
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": ans.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": ans.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": ans.thinking_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _call(self, ans: Answer, rid: str, args: str) -> dict[str, Any]:
        return {
            "id": "call_" + rid,
            "type": "function",
            "function": {"name": ans.tool_name, "arguments": args},
        }

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        # a tool call has null content; a reply cut to nothing (reasoning spent the budget) ""
        content = ans.text or None if ans.tool_name is not None else ans.text
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if ans.tool_name is not None:
            msg["tool_calls"] = [self._call(ans, rid, ans.tool_json)]
        msg.update(refusal=None, annotations=[])
        return {
            "id": "chatcmpl-" + rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": msg,
                    "logprobs": None,
                    "finish_reason": self._FINISH.get(ans.finish, "stop"),
                }
            ],
            "usage": self._usage(ans),
            "service_tier": chat.opts.get("service_tier", "default"),
            "system_fingerprint": "fp_fake",
        }

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        base: dict[str, Any] = {
            "id": "chatcmpl-" + rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": chat.model,
            "service_tier": chat.opts.get("service_tier", "default"),
            "system_fingerprint": "fp_fake",
        }
        tail: dict[str, Any] = {"usage": None} if chat.include_usage else {}
        if chat.opts.get("obfuscation", True):
            tail["obfuscation"] = "fake"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return self.frame(dumps({**base, "choices": [choice], **tail}).encode())

        rows = [(p,) for p in ans.pieces]
        if ans.tool_name is None:
            out = [chunk({"role": "assistant", "content": "", "refusal": None})]
            out += repeat(chunk({"content": SLOT}), rows)
        else:
            first = {"index": 0, **self._call(ans, rid, "")}
            out = [chunk({"role": "assistant", "content": None, "tool_calls": [first], "refusal": None})]
            out += repeat(chunk({"tool_calls": [{"index": 0, "function": {"arguments": SLOT}}]}), rows)
        out.append(chunk({}, self._FINISH.get(ans.finish, "stop")))
        if chat.include_usage:
            usage = {**base, "choices": [], **tail, "usage": self._usage(ans)}
            out.append(self.frame(dumps(usage).encode()))
        out.append(b"data: [DONE]\n\n")
        return out

    def models(self, names: list[str]) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 1715367049, "owned_by": "system"} for n in names
            ],
        }
