"""A request body of the openai or anthropic wire format goes in (as a ``Chat``); that format's JSON
answer, stream events, error bodies and model listings come out, shaped as the real APIs shape them.

``Wire`` is the contract every format follows; gemini and ollama live in ``wire_gemini_ollama``.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, strip_markers, words

__all__ = [
    "MALFORMED", "SLOT", "Anthropic", "OpenAI", "Wire", "dumps", "messages", "opt_int", "repeat",
    "stops", "text", "user",
]

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
MALFORMED = b'{"id":"fake","choices":[{"message":{"content":"oops"}},,]'
SLOT = "\ue000slot\ue000"  # a placeholder value: see ``repeat``
_SLOT_JSON = dumps(SLOT).encode()


def repeat(template: bytes, rows: list[tuple[Any, ...]]) -> list[bytes]:
    """Many stream events from one encoded template: each row fills its ``SLOT``s, in order.

    Encoding the event once and splicing in each piece keeps long streams cheap."""
    parts = template.split(_SLOT_JSON)
    if len(parts) == 2:
        head, tail = parts
        return [head + dumps(row[0]).encode() + tail for row in rows]
    out = []
    for row in rows:
        buf = [parts[0]]
        for value, part in zip(row, parts[1:], strict=True):
            buf += (str(value).encode() if type(value) is int else dumps(value).encode(), part)
        out.append(b"".join(buf))
    return out


def text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        found = (
            p["text"] if isinstance(p.get("text"), str) else text(p.get("content"))
            for p in content if isinstance(p, dict)
        )
        return " ".join(t for t in found if t)
    return ""


def messages(body: dict[str, Any], key: str) -> list[Any]:
    msgs = body.get(key)
    if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
        raise BadRequest(f"'{key}' must be a list of objects")
    return msgs


def opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else ()


def user(chat: Chat, text: str) -> None:
    chat.user_text, chat.marker = strip_markers(text)


class Wire:
    """One wire format; stateless."""

    name: ClassVar[str]

    def stream_type(self, chat: Chat) -> str:
        return "text/event-stream"

    def parse(self, body: Any, model: str | None) -> Chat:
        raise NotImplementedError

    def key(self, headers: Any, query: Any) -> str | None:
        auth = headers.get("Authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else None

    def check(self, headers: Any) -> str | None:
        """A protocol-header problem (answered 400), or None."""
        return None

    def error(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def auth_message(self, missing: bool) -> str:
        return "missing API key" if missing else "invalid API key"

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        raise NotImplementedError

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        """Every stream event, encoded, the terminator (if the format has one) last."""
        raise NotImplementedError

    def frame(self, data: bytes) -> bytes:
        return b"data: " + data + b"\n\n"

    def error_frame(self, message: str) -> bytes:
        """The in-band error event of a stream that fails after it started."""
        return self.frame(dumps(self.error(500, message)).encode())

    def malformed_frame(self) -> bytes:
        return self.frame(MALFORMED)

    def models(self, names: list[str]) -> dict[str, Any]:
        raise NotImplementedError


class OpenAI(Wire):
    name = "openai"
    _TYPES: ClassVar[dict[int, str]] = {401: "invalid_request_error", 429: "requests"}
    _FINISH: ClassVar[dict[str, str]] = {"length": "length", "tool": "tool_calls"}

    def parse(self, body: Any, model: str | None) -> Chat:
        if not isinstance(body.get("model"), str):
            raise BadRequest("you must provide a model parameter")
        msgs = messages(body, "messages")
        if not msgs:
            raise BadRequest("[] is too short - 'messages'")
        chat = Chat("openai", body["model"], stream=bool(body.get("stream")))
        chat.prompt_tokens = sum(words(text(m.get("content"))) for m in msgs)
        if msgs[-1].get("role") == "tool":
            chat.tool_result = text(msgs[-1].get("content"))
        for m in reversed(msgs):
            if m.get("role") == "user":
                user(chat, text(m.get("content")))
                break
        chat.max_tokens = opt_int(body.get("max_completion_tokens", body.get("max_tokens")))
        chat.stop = stops(body.get("stop"))
        if body.get("tool_choice") != "none":
            chat.tools = tuple(
                t["function"]["name"] for t in body.get("tools") or ()
                if isinstance(t, dict) and isinstance(t.get("function"), dict)
            )
        opts = body.get("stream_options")
        chat.include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        return chat

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = self._TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
        return {"error": {"message": message, "type": kind, "param": None,
                          "code": code.get(status)}}

    def auth_message(self, missing: bool) -> str:
        if missing:
            return ("You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        return "Incorrect API key provided. You can find your API key in your account settings."

    def _usage(self, ans: Answer) -> dict[str, int]:
        return {"prompt_tokens": ans.input_tokens, "completion_tokens": ans.output_tokens,
                "total_tokens": ans.input_tokens + ans.output_tokens}

    def _call(self, ans: Answer, rid: str, args: str) -> dict[str, Any]:
        return {"id": "call_" + rid, "type": "function",
                "function": {"name": ans.tool_name, "arguments": args}}

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": ans.text or None, "refusal": None}
        if ans.tool_name is not None:
            msg["tool_calls"] = [self._call(ans, rid, ans.tool_json)]
        return {
            "id": "chatcmpl-" + rid, "object": "chat.completion", "created": int(time.time()),
            "model": chat.model,
            "choices": [{"index": 0, "message": msg, "logprobs": None,
                         "finish_reason": self._FINISH.get(ans.finish, "stop")}],
            "usage": self._usage(ans), "system_fingerprint": "fp_fake",
        }

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        base: dict[str, Any] = {"id": "chatcmpl-" + rid, "object": "chat.completion.chunk",
                                "created": int(time.time()), "model": chat.model,
                                "system_fingerprint": "fp_fake"}
        if chat.include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return self.frame(dumps({**base, "choices": [choice]}).encode())

        rows = [(p,) for p in ans.pieces]
        if ans.tool_name is None:
            out = [chunk({"role": "assistant", "content": "", "refusal": None})]
            out += repeat(chunk({"content": SLOT}), rows)
        else:
            first = {"index": 0, **self._call(ans, rid, "")}
            out = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
            out += repeat(chunk({"tool_calls": [{"index": 0, "function": {"arguments": SLOT}}]}),
                          rows)
        out.append(chunk({}, self._FINISH.get(ans.finish, "stop")))
        if chat.include_usage:
            usage = {**base, "choices": [], "usage": self._usage(ans)}
            out.append(self.frame(dumps(usage).encode()))
        out.append(b"data: [DONE]\n\n")
        return out

    def models(self, names: list[str]) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 1715367049, "owned_by": "system"}
            for n in names]}


class Anthropic(Wire):
    name = "anthropic"
    _TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
        404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
        500: "api_error", 529: "overloaded_error"}
    _STOP: ClassVar[dict[str, str]] = {
        "stop": "end_turn", "length": "max_tokens", "tool": "tool_use",
        "stop_sequence": "stop_sequence"}

    def key(self, headers: Any, query: Any) -> str | None:
        key: str | None = headers.get("x-api-key")
        return key

    def check(self, headers: Any) -> str | None:
        return None if "anthropic-version" in headers else "anthropic-version: header is required"

    def parse(self, body: Any, model: str | None) -> Chat:
        if not isinstance(body.get("model"), str):
            raise BadRequest("model: Field required")
        msgs = messages(body, "messages")
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        chat = Chat("anthropic", body["model"], stream=bool(body.get("stream")),
                    max_tokens=body["max_tokens"], stop=stops(body.get("stop_sequences")))
        system = words(text(body.get("system"))) if body.get("system") else 0
        chat.prompt_tokens = system + sum(words(text(m.get("content"))) for m in msgs)
        last = msgs[-1].get("content") if msgs else None
        if isinstance(last, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in last):
            chat.tool_result = text([b for b in last if b.get("type") == "tool_result"])
        for m in reversed(msgs):
            content = m.get("content")
            if isinstance(content, list):
                content = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
            if m.get("role") == "user" and content:
                user(chat, text(content))
                break
        choice = body.get("tool_choice")
        if not (isinstance(choice, dict) and choice.get("type") == "none"):
            chat.tools = tuple(t["name"] for t in body.get("tools") or ()
                               if isinstance(t, dict) and isinstance(t.get("name"), str))
        return chat

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = self._TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def auth_message(self, missing: bool) -> str:
        return "x-api-key header is required" if missing else "invalid x-api-key"

    def _block(self, ans: Answer, rid: str) -> dict[str, Any]:
        if ans.tool_name is None:
            return {"type": "text", "text": ans.text}
        return {"type": "tool_use", "id": "toolu_" + rid, "name": ans.tool_name,
                "input": ans.tool_args}

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        return {
            "id": "msg_" + rid, "type": "message", "role": "assistant", "model": chat.model,
            "content": [self._block(ans, rid)], "stop_reason": self._STOP[ans.finish],
            "stop_sequence": ans.stop_sequence,
            "usage": {"input_tokens": ans.input_tokens, "output_tokens": ans.output_tokens},
        }

    def event(self, name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + dumps(data).encode() + b"\n\n"

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        ev = self.event
        message = {**self.body(chat, ans, rid), "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": ans.input_tokens, "output_tokens": 1}}
        block = self._block(ans, rid)
        if ans.tool_name is None:
            block, kind, field = {**block, "text": ""}, "text_delta", "text"
        else:
            block, kind, field = {**block, "input": {}}, "input_json_delta", "partial_json"
        out = [ev("message_start", {"type": "message_start", "message": message}),
               ev("content_block_start",
                  {"type": "content_block_start", "index": 0, "content_block": block}),
               ev("ping", {"type": "ping"})]
        out += repeat(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": kind, field: SLOT}}),
                      [(p,) for p in ans.pieces])
        out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ev("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._STOP[ans.finish],
                              "stop_sequence": ans.stop_sequence},
                    "usage": {"output_tokens": ans.output_tokens}}),
                ev("message_stop", {"type": "message_stop"})]
        return out

    def error_frame(self, message: str) -> bytes:
        return self.event("error", self.error(529, message))

    def malformed_frame(self) -> bytes:
        return b"event: content_block_delta\ndata: " + MALFORMED + b"\n\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        data = [{"type": "model", "id": n, "display_name": n.replace("-", " ").title(),
                 "created_at": "2024-10-22T00:00:00Z"} for n in names]
        return {"data": data, "has_more": False, "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None}

