"""A request body of the gemini or ollama wire format goes in (as a ``Chat``); that format's JSON
answer, stream events, error bodies and model listings come out, shaped as the real APIs shape them."""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, words
from engine.fake.wire import SLOT, Wire, dumps, messages, opt_int, repeat, stops, text, user

__all__ = ["Gemini", "Ollama"]


def _get(body: dict[str, Any], camel: str, snake: str) -> Any:
    """Gemini's proto JSON accepts both lowerCamel and snake_case field names."""
    return body.get(camel, body.get(snake))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Gemini(Wire):
    name = "gemini"
    _STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
        404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
        500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    def key(self, headers: Any, query: Any) -> str | None:
        key: str | None = headers.get("x-goog-api-key") or query.get("key")
        return key

    def stream_type(self, chat: Chat) -> str:
        return "text/event-stream" if chat.sse else "application/json"

    def parse(self, body: Any, model: str | None) -> Chat:
        contents = messages(body, "contents")
        if not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        chat = Chat("gemini", model or "")
        system = _dict(_get(body, "systemInstruction", "system_instruction"))
        chat.prompt_tokens = (words(text(system.get("parts"))) if system else 0) + sum(
            words(text(c.get("parts"))) for c in contents)
        last = contents[-1].get("parts")
        if isinstance(last, list):
            results = [_get(p, "functionResponse", "function_response") for p in last
                       if isinstance(p, dict)]
            results = [r for r in results if isinstance(r, dict)]
            if results:
                chat.tool_result = " ".join(dumps(r.get("response")) for r in results)
        for c in reversed(contents):
            said = text(c.get("parts"))
            if c.get("role", "user") == "user" and said:
                user(chat, said)
                break
        cfg = _dict(_get(body, "generationConfig", "generation_config"))
        chat.max_tokens = opt_int(_get(cfg, "maxOutputTokens", "max_output_tokens"))
        chat.stop = stops(_get(cfg, "stopSequences", "stop_sequences"))
        calling = _dict(_get(_dict(_get(body, "toolConfig", "tool_config")),
                             "functionCallingConfig", "function_calling_config"))
        if calling.get("mode") != "NONE":
            chat.tools = tuple(
                d["name"] for t in body.get("tools") or () if isinstance(t, dict)
                for d in _get(t, "functionDeclarations", "function_declarations") or ()
                if isinstance(d, dict) and isinstance(d.get("name"), str))
        return chat

    def error(self, status: int, message: str) -> dict[str, Any]:
        code = self._STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": status, "message": message, "status": code}}

    def auth_message(self, missing: bool) -> str:
        if missing:
            return "Method doesn't allow unregistered callers. Please use an API key."
        return "API key not valid. Please pass a valid API key."

    def _response(self, chat: Chat, ans: Answer, rid: str, parts: list[dict[str, Any]],
                  finish: bool, done: Any, total: Any) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = "MAX_TOKENS" if ans.finish == "length" else "STOP"
        candidate["index"] = 0
        usage = {"promptTokenCount": ans.input_tokens, "candidatesTokenCount": done,
                 "totalTokenCount": total}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": chat.model,
                "responseId": rid}

    def _last(self, chat: Chat, ans: Answer, rid: str, parts: list[dict[str, Any]]) -> bytes:
        n = ans.output_tokens
        return dumps(self._response(chat, ans, rid, parts, True, n, ans.input_tokens + n)).encode()

    def _parts(self, ans: Answer) -> list[dict[str, Any]]:
        if ans.tool_name is None:
            return [{"text": ans.text}]
        return [{"functionCall": {"name": ans.tool_name, "args": ans.tool_args}}]

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        n = ans.output_tokens
        return self._response(chat, ans, rid, self._parts(ans), True, n, ans.input_tokens + n)

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        if ans.tool_name is not None:  # gemini sends a function call whole, in one chunk
            encoded = [self._last(chat, ans, rid, self._parts(ans))]
        else:
            rows, done = [], 0  # usageMetadata is cumulative, chunk by chunk
            for piece in ans.pieces[:-1]:
                done += len(piece.split())
                rows.append((piece, done, ans.input_tokens + done))
            template = self._response(chat, ans, rid, [{"text": SLOT}], False, SLOT, SLOT)
            encoded = repeat(dumps(template).encode(), rows)
            encoded.append(self._last(chat, ans, rid, [{"text": ans.pieces[-1]}]))
        if chat.sse:
            return [self.frame(e) for e in encoded]
        return [b"[" + encoded[0], *(b",\r\n" + e for e in encoded[1:]), b"]"]

    def frame(self, data: bytes) -> bytes:
        return b"data: " + data + b"\r\n\r\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        return {"models": [{
            "name": "models/" + n, "version": "001", "displayName": n.replace("-", " ").title(),
            "description": "A model served by the fake provider.", "inputTokenLimit": 1048576,
            "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1.0, "topP": 0.95, "topK": 40, "maxTemperature": 2.0,
        } for n in names]}


class Ollama(Wire):
    name = "ollama"
    _TIMINGS: ClassVar[dict[str, int]] = {
        "total_duration": 5_000_000, "load_duration": 1_000_000,
        "prompt_eval_duration": 1_000_000, "eval_duration": 3_000_000}

    def key(self, headers: Any, query: Any) -> str | None:
        return None

    def stream_type(self, chat: Chat) -> str:
        return "application/x-ndjson"

    def parse(self, body: Any, model: str | None) -> Chat:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("model is required")
        msgs = messages(body, "messages") if "messages" in body else []
        chat = Chat("ollama", body["model"], stream=body.get("stream", True) is not False)
        chat.prompt_tokens = sum(words(text(m.get("content"))) for m in msgs)
        if msgs and msgs[-1].get("role") == "tool":
            chat.tool_result = text(msgs[-1].get("content"))
        for m in reversed(msgs):
            if m.get("role") == "user":
                user(chat, text(m.get("content")))
                break
        options = _dict(body.get("options"))
        chat.max_tokens = opt_int(options.get("num_predict"))
        chat.stop = stops(options.get("stop"))
        chat.tools = tuple(
            t["function"]["name"] for t in body.get("tools") or ()
            if isinstance(t, dict) and isinstance(t.get("function"), dict))
        return chat

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def _head(self, chat: Chat) -> dict[str, Any]:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        return {"model": chat.model, "created_at": f"{stamp}.{int(now % 1 * 1e6):06d}Z"}

    def _message(self, ans: Answer, content: str, with_tool: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if with_tool and ans.tool_name is not None:
            msg["tool_calls"] = [{"function": {"name": ans.tool_name, "arguments": ans.tool_args}}]
        return msg

    def _final(self, ans: Answer) -> dict[str, Any]:
        return {"done_reason": "length" if ans.finish == "length" else "stop", "done": True,
                **self._TIMINGS, "prompt_eval_count": ans.input_tokens,
                "eval_count": ans.output_tokens}

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        return {**self._head(chat), "message": self._message(ans, ans.text, True),
                **self._final(ans)}

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        head = self._head(chat)
        final = {**head, "message": self._message(ans, "", False), **self._final(ans)}
        if ans.tool_name is None:
            template = {**head, "message": self._message(ans, SLOT, False), "done": False}
            return [*repeat(self.frame(dumps(template).encode()), [(p,) for p in ans.pieces]),
                    self.frame(dumps(final).encode())]
        call = {**head, "message": self._message(ans, "", True), "done": False}
        return [self.frame(dumps(c).encode()) for c in (call, final)]  # tool calls come whole

    def frame(self, data: bytes) -> bytes:
        return data + b"\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        details = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                   "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
        return {"models": [{
            "name": n, "model": n, "modified_at": "2024-09-25T12:00:00.000000Z",
            "size": 2019393189, "digest": hashlib.sha256(n.encode()).hexdigest(),
            "details": details,
        } for n in names]}
