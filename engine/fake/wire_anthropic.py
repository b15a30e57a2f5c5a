"""A Messages API request goes in (checked as strictly as Anthropic checks it, the
``anthropic-version`` header included); the ``message`` answer, its event stream, Anthropic's error
bodies and the model listing come out, with the fields and field order the real API sends.

The key may come as ``x-api-key`` or as ``Authorization: Bearer`` (what the official SDK sends).
``thinking: {type: enabled, budget_tokens}`` adds a signed ``thinking`` block before the reply.
A request that offers the ``web_search_…`` server tool and whose user text says "search" is
answered as the API answers a search: a ``server_tool_use`` block, its
``web_search_tool_result``, then the reply in a plain text block and a cited one (a
``web_search_result_location`` citation; streamed as ``citations_delta``), with
``usage.server_tool_use``; with ``stop_reason=pause_turn`` the turn pauses after the result.
An ``anthropic-beta`` header must be a comma-separated list of flags of Anthropic's form
(``name-YYYY-MM-DD``), ``metadata`` may hold ``user_id`` only. ``POST /v1/messages/count_tokens``
answers ``{"input_tokens": N}`` for a body the count endpoint takes (no ``max_tokens``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, sign, split, words
from engine.fake.wire import MALFORMED, SLOT, Wire, dumps, jtype, repeat, stops, text, typecheck, user

__all__ = ["Anthropic"]

_FIELDS = {
    "model": "string",
    "messages": "array",
    "max_tokens": "integer",
    "system": "string|array",
    "stop_sequences": "array",
    "stream": "boolean",
    "temperature": "number",
    "top_p": "number",
    "top_k": "integer",
    "tools": "array",
    "tool_choice": "object",
    "metadata": "object",
    "thinking": "object",
    "service_tier": "string",
    "container": "string|object",
    "mcp_servers": "array",
    "context_management": "object",
    "cache_control": "object",
    "output_config": "object",
    "output_format": "object",
    "inference_geo": "string",
    "diagnostics": "object",
    "speed": "string",
    "user_profile_id": "string",
    "workspace_id": "string",
}
_VALID = {
    "string": "a valid string",
    "integer": "a valid integer",
    "number": "a valid number",
    "boolean": "a valid boolean",
    "array": "a valid list",
    "object": "a valid dictionary or object to extract fields from",
}
_BLOCKS = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
    "compaction",
)
_SEARCH_WORD = re.compile(r"\bsearch", re.IGNORECASE)
_FOUND = "Based on the search results:"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIRST_VERSION = datetime.date(2023, 1, 1)
_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_BETA = re.compile(r"^[a-z][a-z0-9-]*-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
# what /v1/messages/count_tokens takes
_COUNT_FIELDS = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
)


def _wrong_type(path: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"{path}: Input should be {_VALID[expected]}")


def _check(body: dict[str, Any]) -> None:
    """Raise what the Messages API answers a body it refuses."""
    for key in body:
        if key not in _FIELDS:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            raise BadRequest(f"{key}: Field required")
    typecheck(body, _FIELDS, _wrong_type)
    if body["max_tokens"] < 1:
        raise BadRequest("max_tokens: Input should be greater than or equal to 1")
    _check_messages(body["messages"])
    for seq in body.get("stop_sequences") or ():
        if not isinstance(seq, str):
            raise BadRequest("stop_sequences: Input should be a valid string")
        if not seq:
            raise BadRequest("stop_sequences: each stop sequence must be non-empty")
        if not seq.strip():
            raise BadRequest("stop_sequences: each stop sequence must contain non-whitespace")
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and value > 1:
            raise BadRequest(f"{key}: Input should be less than or equal to 1")
        if value is not None and value < 0:
            raise BadRequest(f"{key}: Input should be greater than or equal to 0")
    _check_tools(body)
    _check_thinking(body)
    _check_output(body.get("output_config"))
    _check_metadata(body.get("metadata"))


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    for key in metadata or ():
        if key != "user_id":
            raise BadRequest(f"metadata.{key}: Extra inputs are not permitted")
    user = (metadata or {}).get("user_id")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise BadRequest("metadata.user_id: Input should be a valid string of at most 256 characters")


def _check_count(body: dict[str, Any]) -> None:
    """Raise what ``/v1/messages/count_tokens`` answers a body it refuses."""
    for key in body:
        if key not in _COUNT_FIELDS:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    for key in ("model", "messages"):
        if key not in body:
            raise BadRequest(f"{key}: Field required")
    typecheck(body, _FIELDS, _wrong_type)
    _check_messages(body["messages"])
    _check_tools(body)
    thinking = body.get("thinking")
    if thinking is not None and thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise BadRequest(f"thinking: Input tag '{thinking.get('type')}' found using 'type' does not match")


def _check_beta(value: str) -> BadRequest | None:
    """A malformed ``anthropic-beta`` header's refusal (the flags are not echoed beyond 40 chars)."""
    bad = [f.strip() for f in value.split(",") if not _BETA.match(f.strip())]
    if not bad:
        return None
    shown = ", ".join(f"`{f[:40]}`" for f in bad[:3])
    return BadRequest(
        f"Unexpected value(s) {shown} for the `anthropic-beta` header. Please consult our "
        "documentation at docs.claude.com or try again without the header."
    )


def _check_output(config: dict[str, Any] | None) -> None:
    """``output_config``: ``effort`` and a ``json_schema`` ``format`` with an object schema."""
    if config is None:
        return
    for key in config:
        if key not in ("effort", "format"):
            raise BadRequest(f"output_config.{key}: Extra inputs are not permitted")
    effort = config.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise BadRequest("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _wrong_type("output_config.format", "object", fmt)
    if fmt.get("type") != "json_schema":
        raise BadRequest(
            f"output_config.format: Input tag '{fmt.get('type')}' found using "
            "'type' does not match any of the expected tags: 'json_schema'"
        )
    if "schema" not in fmt:
        raise BadRequest("output_config.format.json_schema.schema: Field required")
    if not isinstance(fmt["schema"], dict):
        raise _wrong_type("output_config.format.json_schema.schema", "object", fmt["schema"])
    for key in fmt:
        if key not in ("type", "schema"):
            raise BadRequest(f"output_config.format.json_schema.{key}: Extra inputs are not permitted")


def _output(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of structured output: ``output_config.format``'s (or the beta's ``output_format``)."""
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    schema = fmt.get("schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    return schema if isinstance(schema, dict) else None


def _check_messages(msgs: list[Any]) -> None:
    if not msgs:
        raise BadRequest("messages: at least one message is required")
    asked: set[str] = set()  # the tool_use ids of the previous assistant turn
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _wrong_type(f"messages.{i}", "object", m)
        role = m.get("role")
        if role == "system":
            raise BadRequest(
                'messages: Unexpected role "system". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in m:
            raise BadRequest(f"messages.{i}.content: Field required")
        content = m["content"]
        if not isinstance(content, str | list):
            raise _wrong_type(f"messages.{i}.content", "string", content)
        last = i == len(msgs) - 1
        if not content and not (last and role == "assistant"):
            raise BadRequest(
                f"messages.{i}: all messages must have non-empty content except for "
                "the optional final assistant message"
            )
        if last and role == "assistant" and text(content) != text(content).rstrip():
            raise BadRequest("messages: final assistant content cannot end with trailing whitespace")
        blocks = content if isinstance(content, list) else []
        answered = _check_blocks(i, blocks, asked)
        if asked - answered:
            raise BadRequest(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(asked - answered))}. Each `tool_use` block "
                "must have a corresponding `tool_result` block in the next message."
            )
        asked = set()
        if role == "assistant":
            asked = {b["id"] for b in blocks if b["type"] == "tool_use" and "id" in b}


def _check_blocks(i: int, blocks: list[Any], asked: set[str]) -> set[str]:
    """Check one message's content blocks; return the tool_use ids its tool_results answer."""
    answered = set()
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _BLOCKS:
            raise BadRequest(
                f"messages.{i}.content.{j}: Input tag '{kind}' found using 'type' "
                "does not match any of the expected tags: 'text', 'image', "
                "'document', 'tool_use', 'tool_result', 'thinking', ..."
            )
        if kind == "text" and not block.get("text"):
            raise BadRequest("messages: text content blocks must be non-empty")
        if kind == "thinking" and block.get("signature") != sign(str(block.get("thinking"))):
            raise BadRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
        if kind == "tool_result":
            ref = block.get("tool_use_id")
            if ref not in asked:
                raise BadRequest(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {ref}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
            answered.add(ref)
    return answered


def _check_tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict):
            raise _wrong_type(f"tools.{i}", "object", tool)
        if tool.get("type", "custom") != "custom":
            continue  # a server tool (web_search_20250305, ...)
        for key in ("name", "input_schema"):
            if key not in tool:
                raise BadRequest(f"tools.{i}.custom.{key}: Field required")
        if not isinstance(tool["name"], str) or not _TOOL_NAME.match(tool["name"]):
            raise BadRequest(f"tools.{i}.custom.name: String should match pattern '{_TOOL_NAME.pattern}'")
        schema = tool["input_schema"]
        if not isinstance(schema, dict):
            raise _wrong_type(f"tools.{i}.custom.input_schema", "object", schema)
        if schema.get("type") != "object":
            raise BadRequest(
                f"tools.{i}.custom.input_schema.type: Field required"
                if "type" not in schema
                else f"tools.{i}.custom.input_schema.type: Input should be 'object'"
            )
    choice = body.get("tool_choice")
    if choice is not None:
        if not body.get("tools") and choice.get("type") != "none":
            raise BadRequest("tool_choice may only be specified while providing tools.")
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise BadRequest(
                f"tool_choice: Input tag '{choice.get('type')}' found using 'type' "
                "does not match any of the expected tags: 'auto', 'any', 'tool', "
                "'none'"
            )
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise BadRequest("tool_choice.tool.name: Field required")


def _check_thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type")
    if kind not in ("enabled", "disabled", "adaptive"):
        raise BadRequest(
            f"thinking: Input tag '{kind}' found using 'type' does not match any of "
            "the expected tags: 'adaptive', 'disabled', 'enabled'"
        )
    if kind == "disabled":
        return
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is None:
            raise BadRequest("thinking.enabled.budget_tokens: Field required")
        if jtype(budget) != "integer":
            raise _wrong_type("thinking.enabled.budget_tokens", "integer", budget)
        if budget < 1024:
            raise BadRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if body["max_tokens"] <= budget:
            raise BadRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                f"consult our documentation at {_DOCS}#max-tokens-and-context-window-size"
            )
    if body.get("temperature") is not None and body["temperature"] != 1:
        raise BadRequest(
            "`temperature` may only be set to 1 when thinking is enabled. Please "
            f"consult our documentation at {_DOCS}#feature-compatibility"
        )
    if body.get("top_k") is not None:
        raise BadRequest(
            "`top_k` must be unset when thinking is enabled. Please consult our "
            f"documentation at {_DOCS}#feature-compatibility"
        )
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        raise BadRequest(
            "`top_p` must be greater than or equal to 0.95 or unset when thinking "
            f"is enabled. Please consult our documentation at {_DOCS}"
            "#feature-compatibility"
        )
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
    _check_thinking_kept(body["messages"])


def _check_thinking_kept(msgs: list[dict[str, Any]]) -> None:
    """With thinking on, the assistant turn whose tool calls the conversation is answering must
    hand its thinking back first (the API needs it to continue that reasoning)."""
    last = msgs[-1].get("content")
    if not (isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)):
        return
    i = len(msgs) - 2
    turn = msgs[i].get("content") if i >= 0 else None
    if not isinstance(turn, list) or not turn:
        return
    first = turn[0].get("type")
    if first not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with "
            "a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
            "blocks). We recommend you include thinking blocks from previous turns. To avoid "
            f"this requirement, disable `thinking`. Please consult our documentation at {_DOCS}"
        )


class Anthropic(Wire):
    name = "anthropic"
    base_path = "/v1"
    default_models = ("claude-3-5-haiku-latest", "claude-3-5-sonnet-latest")
    _TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    _STOP: ClassVar[dict[str, str]] = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool": "tool_use",
        "stop_sequence": "stop_sequence",
        "pause_turn": "pause_turn",
        "refusal": "refusal",
    }

    def route(self, method: str, path: str, headers: Any) -> tuple[str, str | None] | None:
        if method == "POST" and path.endswith("/messages"):
            return "chat", None
        if method == "POST" and path.endswith("/messages/count_tokens"):
            return "count", None
        if (
            method == "GET"
            and path.endswith("/models")
            and ("anthropic-version" in headers or "x-api-key" in headers)
        ):
            return "models", None
        return None

    def key(self, headers: Any, query: Any) -> str | None:
        key: str | None = headers.get("x-api-key") or None
        return key if key is not None else super().key(headers, query)

    def check(self, headers: Any) -> BadRequest | None:
        version = headers.get("anthropic-version")
        if version is None:
            return BadRequest("anthropic-version: header is required")
        try:
            valid = bool(_VERSION.match(version)) and datetime.date.fromisoformat(version) >= _FIRST_VERSION
        except ValueError:
            valid = False
        if not valid:
            return BadRequest(f'anthropic-version: "{version[:40]}" is not a valid version')
        beta = headers.get("anthropic-beta")
        return None if beta is None else _check_beta(beta)

    def auth_failure(self, headers: Any, missing: bool) -> BadRequest:
        if missing:
            return BadRequest("x-api-key header is required", status=401)
        if not headers.get("x-api-key"):
            return BadRequest("Invalid bearer token", status=401)
        return BadRequest("invalid x-api-key", status=401)

    def parse_for(self, op: str, body: Any, model: str | None) -> Chat:
        if op != "count":
            return self.parse(body, model)
        _check_count(body)
        chat = self.parse({**body, "max_tokens": 1 << 30}, model)  # no limit to count under
        chat.opts["count"] = True
        return chat

    def parse(self, body: Any, model: str | None) -> Chat:
        _check(body)
        msgs = body["messages"]
        chat = Chat(
            "anthropic",
            body["model"],
            stream=bool(body.get("stream")),
            max_tokens=body["max_tokens"],
            stop=stops(body.get("stop_sequences")),
        )
        system = words(text(body.get("system"))) if body.get("system") else 0
        chat.prompt_tokens = system + sum(words(text(m.get("content"))) for m in msgs)
        last = msgs[-1].get("content")
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            chat.tool_result = text([b for b in last if b.get("type") == "tool_result"])
        for m in reversed(msgs):
            content = m.get("content")
            if isinstance(content, list):
                content = [b for b in content if b.get("type") == "text"]
            if m.get("role") == "user" and content:
                user(chat, text(content))
                break
        if (body.get("tool_choice") or {}).get("type") != "none":
            custom = [t for t in body.get("tools") or () if t.get("type", "custom") == "custom"]
            chat.tools = tuple(t["name"] for t in custom)
            chat.schemas = {t["name"]: t["input_schema"] for t in custom}
            choice = body.get("tool_choice") or {}
            if choice.get("type") in ("any", "tool"):
                chat.forced = str(choice.get("name") or "")
        chat.thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
        chat.output = _output(body)
        search = next(
            (t for t in body.get("tools") or () if str(t.get("type", "")).startswith("web_search_")), None
        )
        if search is not None and chat.tool_result is None and _SEARCH_WORD.search(chat.user_text):
            chat.opts["search"] = (str(search.get("name") or "web_search"), chat.user_text)
        return chat

    def error(self, status: int, message: str, rid: str = "") -> dict[str, Any]:
        kind = self._TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_" + rid}

    def headers(self, rid: str) -> dict[str, str]:
        return {"request-id": "req_" + rid}

    def _blocks(self, ans: Answer, rid: str, chat: Chat | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if ans.thinking:
            out.append({"type": "thinking", "thinking": ans.thinking, "signature": ans.signature})
        search = chat.opts.get("search") if chat is not None and ans.tool_name is None else None
        if search is not None:
            return out + _searched(search[0], search[1], ans, rid)
        if ans.tool_name is not None:
            out.append(
                {"type": "tool_use", "id": "toolu_" + rid, "name": ans.tool_name, "input": ans.tool_args}
            )
        elif ans.text:
            out.append({"type": "text", "text": ans.text})
        return out

    def _usage(self, ans: Answer, output: int, chat: Chat | None = None) -> dict[str, Any]:
        usage = {
            "input_tokens": ans.input_tokens,
            "cache_creation_input_tokens": ans.cache_write_tokens,
            "cache_read_input_tokens": ans.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": ans.cache_write_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output,
            "service_tier": "standard",
        }
        if chat is not None and "search" in chat.opts and ans.tool_name is None:
            usage["server_tool_use"] = {"web_search_requests": 1, "web_fetch_requests": 0}
        return usage

    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        if chat.opts.get("count"):
            return {"input_tokens": chat.prompt_tokens}
        return {
            "model": chat.model,
            "id": "msg_" + rid,
            "type": "message",
            "role": "assistant",
            "content": self._blocks(ans, rid, chat),
            "stop_reason": self._STOP[ans.finish],
            "stop_sequence": ans.stop_sequence,
            "usage": self._usage(ans, ans.output_tokens + ans.thinking_tokens, chat),
        }

    def event(self, name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + dumps(data).encode() + b"\n\n"

    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        ev = self.event
        message = {
            **self.body(chat, ans, rid),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(ans, 1),
        }
        out = [ev("message_start", {"type": "message_start", "message": message})]
        for index, block in enumerate(self._blocks(ans, rid, chat)):
            events = self._block_frames(index, block, ans)
            if index == 0:  # the API pings once, right after the first block starts
                events.insert(1, ev("ping", {"type": "ping"}))
            out += events
        usage = self._usage(ans, ans.output_tokens + ans.thinking_tokens, chat)
        del usage["cache_creation"], usage["service_tier"]
        out += [
            ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._STOP[ans.finish], "stop_sequence": ans.stop_sequence},
                    "usage": usage,
                },
            ),
            ev("message_stop", {"type": "message_stop"}),
        ]
        return out

    def _block_frames(self, index: int, block: dict[str, Any], ans: Answer) -> list[bytes]:
        ev = self.event
        kind = block["type"]
        if kind == "thinking":
            start, delta, field = {**block, "thinking": "", "signature": ""}, "thinking_delta", kind
            pieces = [(p,) for p in ans.thinking_pieces]
        elif kind == "tool_use":
            start, delta, field = {**block, "input": {}}, "input_json_delta", "partial_json"
            pieces = [("",), *((p,) for p in ans.pieces)]  # the API opens with an empty piece
        elif kind == "server_tool_use":
            start, delta, field = {**block, "input": {}}, "input_json_delta", "partial_json"
            pieces = [("",), *((p,) for p in split(json.dumps(block["input"]), 2))]
        elif kind == "text":
            start, delta, field = {**block, "text": ""}, "text_delta", "text"
            pieces = [(p,) for p in ans.pieces] if block["text"] == ans.text else [(block["text"],)]
        else:  # a server tool's result: whole in its start
            start, delta, field, pieces = block, "", "", []
        cites = start.pop("citations", None) if kind == "text" else None
        if cites is not None:
            start["citations"] = []
        out = [
            ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        ]
        for cite in cites or ():  # the API sends a block's citations before its text
            out.append(
                ev(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "citations_delta", "citation": cite},
                    },
                )
            )
        if not pieces:
            out.append(ev("content_block_stop", {"type": "content_block_stop", "index": index}))
            return out
        out += repeat(
            ev(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": delta, field: SLOT}},
            ),
            pieces,
        )
        if kind == "thinking":
            out.append(
                ev(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": ans.signature},
                    },
                )
            )
        out.append(ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        return out

    def error_frame(self, message: str, rid: str = "") -> bytes:
        body = self.error(529, message, rid)
        body["error"] = {"details": None, **body["error"]}
        return self.event("error", body)

    def malformed_frame(self) -> bytes:
        return b"event: content_block_delta\ndata: " + MALFORMED + b"\n\n"

    def models(self, names: list[str]) -> dict[str, Any]:
        data = [
            {
                "type": "model",
                "id": n,
                "display_name": n.replace("-", " ").title(),
                "created_at": "2024-10-22T00:00:00Z",
            }
            for n in names
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }


def _searched(name: str, query: str, ans: Answer, rid: str) -> list[dict[str, Any]]:
    """A web search's blocks: the server tool's call and result, then (unless the turn pauses)
    the reply, plain and then cited, as the API sends a searched answer."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "result"
    url = f"https://example.org/{slug}"
    title = f"About {query[:60]}"
    digest = hashlib.sha256(url.encode()).digest()
    out: list[dict[str, Any]] = [
        {"type": "server_tool_use", "id": "srvtoolu_" + rid, "name": name, "input": {"query": query}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_" + rid,
            "content": [
                {
                    "type": "web_search_result",
                    "title": title,
                    "url": url,
                    "encrypted_content": base64.b64encode(digest * 2).decode(),
                    "page_age": "April 1, 2025",
                }
            ],
        },
    ]
    if ans.finish == "pause_turn" or not ans.text:
        return out
    cite = {
        "type": "web_search_result_location",
        "cited_text": ans.text[:150],
        "url": url,
        "title": title,
        "encrypted_index": base64.b64encode(digest[:24]).decode(),
    }
    return [*out, {"type": "text", "text": _FOUND}, {"type": "text", "text": ans.text, "citations": [cite]}]
