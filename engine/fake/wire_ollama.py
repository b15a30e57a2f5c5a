"""An ``/api/chat`` request goes in; Ollama's answer, its NDJSON stream (the default: Ollama streams
unless ``stream: false``), its ``{"error": "..."}`` bodies and the ``/api/tags`` listing come out,
with the fields and field order a local Ollama sends.

``think: true`` (or a level, "low"/"medium"/"high") adds ``message.thinking`` before the content.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, words
from engine.fake.wire import SLOT, Wire, dumps, jtype, opt_int, repeat, stops, text, user

__all__ = ["Ollama"]

_GO = {
    "string": "string",
    "integer": "int",
    "number": "float64",
    "boolean": "bool",
    "array": "[]api.Message",
    "object": "map[string]interface {}",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _unmarshal(field: str, value: Any, go_type: str) -> BadRequest:
    """What Go's encoding/json says about a value of the wrong type."""
    return BadRequest(
        f"json: cannot unmarshal {_GO.get(jtype(value), jtype(value))} into Go "
        f"struct field ChatRequest.{field} of type {go_type}"
    )


class Ollama(Wire):
    name = "ollama"
    default_models = ("llama3.2:latest", "qwen2.5:0.5b")
    keyed = False
    _TIMINGS: ClassVar[dict[str, int]] = {"total_duration": 5_000_000, "load_duration": 1_000_000}

    def route(self, method: str, path: str, headers: Any) -> tuple[str, str | None] | None:
        if method == "POST" and path.endswith("/api/chat"):
            return "chat", None
        if method == "GET" and path.endswith("/api/tags"):
            return "models", None
        return None

    def key(self, headers: Any, query: Any) -> str | None:
        return None

    def stream_type(self, chat: Chat) -> str:
        return "application/x-ndjson"

    def parse(self, body: Any, model: str | None) -> Chat:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("model is required")
        msgs = body.get("messages") or []
        if not isinstance(msgs, list):
            raise _unmarshal("messages", msgs, "[]api.Message")
        for m in msgs:
            if not isinstance(m, dict):
                raise _unmarshal("messages", m, "api.Message")
        for key, go_type in (("options", "map[string]interface {}"), ("tools", "[]api.Tool")):
            value = body.get(key)
            if value is not None and jtype(value) != ("object" if key == "options" else "array"):
                raise _unmarshal(key, value, go_type)
        think = body.get("think")
        if think is not None and think not in (True, False, "low", "medium", "high"):
            raise BadRequest(
                f'invalid think value: "{think}" (must be "high", "medium", "low", true, or false)'
            )
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
        fns = [_dict(t.get("function")) for t in body.get("tools") or () if isinstance(t, dict)]
        chat.tools = tuple(fn["name"] for fn in fns if isinstance(fn.get("name"), str))
        chat.schemas = {fn["name"]: fn.get("parameters") for fn in fns if isinstance(fn.get("name"), str)}
        chat.thinking = think not in (None, False)
        return chat

    def error(self, status: int, message: str, rid: str = "") -> dict[str, Any]:
        return {"error": message}

    def _head(self, chat: Chat) -> dict[str, Any]:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        return {"model": chat.model, "created_at": f"{stamp}.{int(now % 1 * 1e6):06d}Z"}

    def _message(
        self, ans: Answer, rid: str, content: str, thinking: str | None, with_tool: bool
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking is not None:
            msg["thinking"] = thinking
        if with_tool and ans.tool_name is not None:
            msg["tool_calls"] = [
                {
                    "id": "call_" + rid[-8:],
                    "function": {"index": 0, "name": ans.tool_name, "arguments": ans.tool_args},
                }
            ]
        return msg

    def _final(self, ans: Answer) -> dict[str, Any]:
        return {
            "done_reason": "length" if ans.finish == "length" else "stop",
            "done": True,
            **self._TIMINGS,
            "prompt_eval_count": ans.input_tokens,
            "prompt_eval_duration": 1_000_000,
            "eval_count": ans.output_tokens + ans.thinking_tokens,
            "eval_duration": 3_000_000,
        }

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        thinking = ans.thinking or None
        return {
            **self._head(chat),
            "message": self._message(ans, rid, ans.text, thinking, True),
            **self._final(ans),
        }

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        head = self._head(chat)
        out = []
        if ans.thinking:
            template = {**head, "message": self._message(ans, rid, "", SLOT, False), "done": False}
            out += repeat(self.frame(dumps(template).encode()), [(p,) for p in ans.thinking_pieces])
        final = {**head, "message": self._message(ans, rid, "", None, False), **self._final(ans)}
        if ans.tool_name is None:
            template = {**head, "message": self._message(ans, rid, SLOT, None, False), "done": False}
            return [
                *out,
                *repeat(self.frame(dumps(template).encode()), [(p,) for p in ans.pieces]),
                self.frame(dumps(final).encode()),
            ]
        call = {**head, "message": self._message(ans, rid, "", None, True), "done": False}
        return [*out, *(self.frame(dumps(c).encode()) for c in (call, final))]  # calls come whole

    def frame(self, data: bytes) -> bytes:
        return data + b"\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        details = {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        }
        return {
            "models": [
                {
                    "name": n,
                    "model": n,
                    "modified_at": "2024-09-25T12:00:00.000000Z",
                    "size": 2019393189,
                    "digest": hashlib.sha256(n.encode()).hexdigest(),
                    "details": details,
                }
                for n in names
            ]
        }
