"""A generateContent request goes in (checked as strictly as Google checks it: unknown field names
and wrong types are refused); the GenerateContentResponse, its stream (SSE or a JSON array), Google's
error bodies and the model listing come out, with the fields the real API sends.

Gemini 2.5 and later think by default (``thoughtsTokenCount``; ``thinkingBudget: 0`` turns it off);
``thinkingConfig.includeThoughts`` also returns the thoughts as ``thought: true`` parts.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, words
from engine.fake.wire import SLOT, Wire, dumps, jtype, opt_int, repeat, stops, text, user

__all__ = ["Gemini"]

# field (lowerCamel; snake_case is accepted too) -> proto type of the value
_REQUEST = {
    "model": "string",
    "contents": "array",
    "tools": "array",
    "toolConfig": "object",
    "safetySettings": "array",
    "systemInstruction": "object",
    "generationConfig": "object",
    "cachedContent": "string",
}
_GENERATION = {
    "stopSequences": "array",
    "responseMimeType": "string",
    "responseSchema": "object",
    "responseJsonSchema": "object",
    "candidateCount": "integer",
    "maxOutputTokens": "integer",
    "temperature": "number",
    "topP": "number",
    "topK": "integer",
    "seed": "integer",
    "presencePenalty": "number",
    "frequencyPenalty": "number",
    "responseLogprobs": "boolean",
    "logprobs": "integer",
    "enableEnhancedCivicAnswers": "boolean",
    "responseModalities": "array",
    "speechConfig": "object",
    "thinkingConfig": "object",
    "imageConfig": "object",
    "mediaResolution": "string",
    "audioTimestamp": "boolean",
    "enableAffectiveDialog": "boolean",
    "routingConfig": "object",
    "modelSelectionConfig": "object",
}
_THINKING = {"includeThoughts": "boolean", "thinkingBudget": "integer", "thinkingLevel": "string"}
_PART = {
    "text": "string",
    "inlineData": "object",
    "fileData": "object",
    "functionCall": "object",
    "functionResponse": "object",
    "executableCode": "object",
    "codeExecutionResult": "object",
    "thought": "boolean",
    "thoughtSignature": "string",
    "videoMetadata": "object",
    "partMetadata": "object",
    "mediaResolution": "object",
}
_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
_PROTO = {
    "string": "TYPE_STRING",
    "integer": "TYPE_INT32",
    "number": "TYPE_FLOAT",
    "boolean": "TYPE_BOOL",
    "array": "list",
    "object": "message",
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
_THINKS = re.compile(r"gemini-(?:2\.5|[3-9])")  # thinking models: they think unless told not to
_CALL = re.compile(r"/models/(.+):(generateContent|streamGenerateContent)$")
_SIGNED = re.compile(r"gemini-[3-9]")  # these require their function calls' thought signatures


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _fields(obj: dict[str, Any], known: dict[str, str], path: str) -> dict[str, Any]:
    """``obj`` with lowerCamel keys, refusing unknown names and wrong types as Google does."""
    out = {}
    for key, value in obj.items():
        name = _camel(key)
        if name not in known:
            at = f" at '{path}'" if path else ""
            raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        expected, got = known[name], jtype(value)
        integral = got == "number" and expected == "integer" and float(value).is_integer()
        if (
            value is not None
            and got != expected
            and not integral
            and not (got == "integer" and expected == "number")
        ):
            where = f"{path}.{_snake(name)}" if path else _snake(name)
            raise BadRequest(f"Invalid value at '{where}' ({_PROTO[expected]}), {dumps(value)}")
        out[name] = value
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _not_message(where: str, message: str, value: Any) -> BadRequest:
    """What Gemini answers a value at ``where`` that is not an object of its ``message`` type."""
    return BadRequest(
        f"Invalid value at '{where}' (type.googleapis.com/google.ai."
        f"generativelanguage.v1beta.{message}), {dumps(value)}"
    )


def _check_contents(contents: list[Any]) -> None:
    if not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise _not_message(where, "Content", content)
        content = _fields(content, {"role": "string", "parts": "array"}, where)
        if content.get("role", "user") not in ("user", "model", "function", ""):
            raise BadRequest("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not parts:
            raise BadRequest(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            at = f"{where}.parts[{j}]"
            if not isinstance(part, dict):
                raise _not_message(at, "Part", part)
            fields = _fields(part, _PART, at)
            if not any(fields.get(k) not in (None, "") for k in _DATA):  # "" is proto3's unset
                raise BadRequest(
                    f"* GenerateContentRequest.{at}.data: required oneof field 'data' "
                    "must have one initialized field"
                )


def _check_signatures(contents: list[dict[str, Any]]) -> None:
    """Gemini 3 refuses a current turn (the contents after the last user text) whose model steps
    hand a function call back without the thoughtSignature it came with."""
    start = max(
        (
            i
            for i, c in enumerate(contents)
            if c.get("role", "user") == "user" and any(isinstance(p.get("text"), str) for p in c["parts"])
        ),
        default=0,
    )
    for i, content in enumerate(contents[start:], start):
        calls = [p for p in content["parts"] if _get(p, "functionCall") is not None]
        if content.get("role") == "model" and calls and not _get(calls[0], "thoughtSignature"):
            name = _dict(_get(calls[0], "functionCall")).get("name")
            raise BadRequest(
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly, and missing thought_signature may lead to "
                f"degraded model performance. Additional data, function call `default_api:{name}` "
                f", position {i + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )


def _check_tools(tools: list[Any]) -> None:
    for i, tool in enumerate(tools):
        for j, decl in enumerate(_get(_dict(tool), "functionDeclarations") or ()):
            name = _dict(decl).get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise BadRequest(
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid "
                    "function name. Must start with a letter or an underscore. Must be alphameric "
                    "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a "
                    "maximum length of 64."
                )


def _get(body: dict[str, Any], camel: str) -> Any:
    """A field by its lowerCamel name or its snake_case one (proto JSON accepts both)."""
    return body.get(camel, body.get(_snake(camel)))


class Gemini(Wire):
    name = "gemini"
    default_models = ("gemini-1.5-flash", "gemini-1.5-pro")
    _STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ABORTED",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "NOT_IMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }

    def route(self, method: str, path: str, headers: Any) -> tuple[str, str | None] | None:
        if method == "POST" and (m := _CALL.search(path)) is not None:
            return "stream" if m.group(2).startswith("stream") else "chat", m.group(1)
        if (
            method == "GET"
            and path.endswith("/models")
            and (path.endswith("v1beta/models") or "x-goog-api-key" in headers)
        ):
            return "models", None
        return None

    def streams(self, chat: Chat, op: str, query: Any) -> None:
        chat.stream, chat.sse = op == "stream", query.get("alt") == "sse"

    def key(self, headers: Any, query: Any) -> str | None:
        key: str | None = headers.get("x-goog-api-key") or query.get("key")
        return key

    def stream_type(self, chat: Chat) -> str:
        return "text/event-stream" if chat.sse else "application/json"

    def parse(self, body: Any, model: str | None) -> Chat:
        body = _fields(body, _REQUEST, "")
        if "contents" not in body:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        cfg = _fields(_dict(body.get("generationConfig")), _GENERATION, "generation_config")
        thinking = _fields(_dict(cfg.get("thinkingConfig")), _THINKING, "generation_config.thinking_config")
        contents = body["contents"]
        _check_contents(contents)
        _check_tools(body.get("tools") or [])
        if _SIGNED.search(model or ""):
            _check_signatures(contents)
        chat = Chat("gemini", model or "")
        system = _dict(body.get("systemInstruction"))
        chat.prompt_tokens = (words(text(system.get("parts"))) if system else 0) + sum(
            words(text(c.get("parts"))) for c in contents
        )
        results = [_get(p, "functionResponse") for p in contents[-1]["parts"]]
        if any(isinstance(r, dict) for r in results):
            chat.tool_result = " ".join(dumps(r.get("response")) for r in results if isinstance(r, dict))
        for c in reversed(contents):
            said = text(c.get("parts"))
            if c.get("role", "user") == "user" and said:
                user(chat, said)
                break
        chat.max_tokens = opt_int(cfg.get("maxOutputTokens"))
        chat.stop = stops(cfg.get("stopSequences"))
        calling = _dict(_get(_dict(body.get("toolConfig")), "functionCallingConfig"))
        if calling.get("mode") != "NONE":
            decls = [
                _dict(d)
                for t in body.get("tools") or ()
                for d in _get(_dict(t), "functionDeclarations") or ()
            ]
            chat.tools = tuple(d["name"] for d in decls)
            chat.schemas = {d["name"]: _get(d, "parametersJsonSchema") or d.get("parameters") for d in decls}
            if calling.get("mode") in ("ANY", "VALIDATED"):  # (allowedFunctionNames: the first)
                names = _get(calling, "allowedFunctionNames")
                chat.forced = str(names[0]) if isinstance(names, list) and names else ""
        shown = thinking.get("includeThoughts") is True
        budget = thinking.get("thinkingBudget")
        chat.thinking = budget != 0 and (shown or bool(_THINKS.search(chat.model)))
        chat.show_thinking = shown
        return chat

    def error(self, status: int, message: str, rid: str = "") -> dict[str, Any]:
        code = self._STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": status, "message": message, "status": code}}

    def refuse(self, exc: BadRequest, rid: str = "") -> dict[str, Any]:
        body = self.error(exc.status, exc.message, rid)
        if exc.code is not None:  # a reason: Google adds an ErrorInfo and a localized message
            body["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": exc.code,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": exc.message,
                },
            ]
        return body

    def auth_failure(self, headers: Any, missing: bool) -> BadRequest:
        if missing:
            return BadRequest(
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of API "
                "consumer identity to call this API.",
                status=403,
            )
        return BadRequest(
            "API key not valid. Please pass a valid API key.", status=400, code="API_KEY_INVALID"
        )

    def _usage(self, ans: Answer, done: Any, thoughts: Any) -> dict[str, Any]:
        prompt = ans.prompt_tokens
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if done is not None:
            usage["candidatesTokenCount"] = done
        usage["totalTokenCount"] = SLOT if done is SLOT else (prompt + (done or 0) + (thoughts or 0))
        if ans.cached_tokens:
            usage["cachedContentTokenCount"] = ans.cached_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        if ans.cached_tokens:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": ans.cached_tokens}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def _response(
        self,
        chat: Chat,
        ans: Answer,
        rid: str,
        parts: list[dict[str, Any]],
        finish: bool,
        usage: dict[str, Any],
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = "MAX_TOKENS" if ans.finish == "length" else "STOP"
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": chat.model,
            "responseId": rid,
        }

    def _parts(self, chat: Chat, ans: Answer) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if ans.thinking and chat.show_thinking:
            parts.append({"text": ans.thinking, "thought": True})
        if ans.tool_name is not None:
            call: dict[str, Any] = {"functionCall": {"name": ans.tool_name, "args": ans.tool_args}}
            if ans.thinking:  # a thinking model signs its first function call
                call["thoughtSignature"] = ans.signature
            parts.append(call)
        elif ans.text or not parts:
            parts.append({"text": ans.text})
        return parts

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        usage = self._usage(ans, ans.output_tokens, ans.thinking_tokens)
        return self._response(chat, ans, rid, self._parts(chat, ans), True, usage)

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        thoughts = ans.thinking_tokens
        encoded = []
        if ans.thinking and chat.show_thinking:  # thought summaries come first, counted as they go
            counted = 0
            for piece in ans.thinking_pieces:
                counted += len(piece.split())
                encoded.append(
                    dumps(
                        self._response(
                            chat,
                            ans,
                            rid,
                            [{"text": piece, "thought": True}],
                            False,
                            self._usage(ans, None, counted),
                        )
                    ).encode()
                )
        last_usage = self._usage(ans, ans.output_tokens, thoughts)
        if ans.tool_name is not None:  # gemini sends a function call whole, in one chunk
            parts = [p for p in self._parts(chat, ans) if not p.get("thought")]
            encoded.append(dumps(self._response(chat, ans, rid, parts, True, last_usage)).encode())
        else:
            rows, done = [], 0  # usageMetadata is cumulative, chunk by chunk
            for piece in ans.pieces[:-1]:
                done += len(piece.split())
                rows.append((piece, done, ans.prompt_tokens + done + thoughts))
            template = self._response(
                chat, ans, rid, [{"text": SLOT}], False, self._usage(ans, SLOT, thoughts)
            )
            encoded += repeat(dumps(template).encode(), rows)
            encoded.append(
                dumps(self._response(chat, ans, rid, [{"text": ans.pieces[-1]}], True, last_usage)).encode()
            )
        if chat.sse:
            return [self.frame(e) for e in encoded]
        return [b"[" + encoded[0], *(b",\r\n" + e for e in encoded[1:]), b"]"]

    def frame(self, data: bytes) -> bytes:
        return b"data: " + data + b"\r\n\r\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": "models/" + n,
                    "version": "001",
                    "displayName": n.replace("-", " ").title(),
                    "description": "A model served by the fake provider.",
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                    "temperature": 1.0,
                    "topP": 0.95,
                    "topK": 40,
                    "maxTemperature": 2.0,
                    "thinking": bool(_THINKS.search(n)),
                }
                for n in names
            ]
        }
