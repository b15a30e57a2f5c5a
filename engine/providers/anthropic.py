"""Anthropic Messages: a unified (OpenAI-style) request in, a /v1/messages body out, and back.

The mapping: system messages and the ``system`` prompt are hoisted into ``system``; tool results
become ``tool_result`` blocks in a user turn; assistant tool calls become ``tool_use`` blocks;
consecutive turns of one role are merged (parallel tool results must share one user turn);
``max_tokens`` is required, so it defaults to 1024. Stop sequences of whitespace only are left
out (Anthropic refuses them); ``response_format`` json_schema becomes
``output_config.format`` (``json_object`` has no equivalent and is left out); ``reasoning_effort``
becomes ``thinking: {type: enabled, budget_tokens}`` (a request's own ``thinking`` goes as
written), without the sampling settings thinking refuses; an assistant message's
``reasoning_content`` with its ``reasoning_signature`` goes back as a ``thinking`` block before
its text and tool calls; ``notes`` names what is left out. OpenAI's ``user`` becomes
``metadata.user_id``.

A request with an Anthropic-native part (``engine.providers.native``: what the gateway's
Anthropic dialect read from its client) is sent as its client wrote it: system, turns, tools,
tool_choice, thinking and sampling as written, other top-level fields (service_tier, ...) added,
the client's ``anthropic-beta`` and ``anthropic-version`` as headers of the call.
"""

from __future__ import annotations

from typing import Any

from engine.providers._wire import (
    Deltas,
    SSEParser,
    args_object,
    as_dict,
    as_list,
    dump_args,
    error_text,
    fail,
    image_url_of,
    names,
    opt_dict,
    opt_str,
    parse_data_url,
    stop_list,
    text_of,
    tokens,
)
from engine.providers.base import (
    DEFAULT_WIRE,
    Kind,
    Parsed,
    StreamParser,
    WireError,
    WireOptions,
    unsent,
)
from engine.providers.native import BETA
from engine.providers.native import VERSION as VERSION_FORM
from engine.providers.native import native as native_of
from engine.result import NativeEvent, ReasoningBlock, TextDelta, ToolCall, ToolCallDelta, Usage

__all__ = ["DEFAULT_MAX_TOKENS", "KIND", "AnthropicKind"]

DEFAULT_MAX_TOKENS = 1024
VERSION = "2023-06-01"

# the message's own fields an Anthropic client gets back as they came (``Response.native``)
_NATIVE = ("id", "content", "stop_reason", "stop_sequence", "usage")
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_TOOL_CHOICE: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}


# reasoning_effort -> thinking budget (Anthropic's minimum is 1024; the budget stays under max_tokens)
_BUDGET = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192}
_MIN_BUDGET = 1024
_MAPPED: frozenset[str] = frozenset({"user"})  # of base.OPENAI_ONLY
# what a token count takes of a Messages body
_COUNTED = ("system", "tools", "tool_choice", "thinking")


# -- request ---------------------------------------------------------------------------------------


def _part(part: Any) -> Any:
    """One OpenAI content part as an Anthropic content block (unknown parts pass unchanged, so
    Anthropic-native blocks such as ``document`` or ``cache_control`` text work as written)."""
    if type(part) is not dict:
        return part
    kind = part.get("type")
    if kind == "image_url":
        url = image_url_of(part)
        if url is not None:
            data = parse_data_url(url)
            if data is not None:
                return {"type": "image", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
            return {"type": "image", "source": {"type": "url", "url": url}}
    elif kind == "file":
        file = part.get("file")
        data = parse_data_url(file.get("file_data") or "") if type(file) is dict else None
        if data is not None:
            block = "image" if data[0].startswith("image/") else "document"
            return {"type": block, "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
    return part


def _content(content: Any) -> Any:
    """Message content: a string stays a string; a list of parts becomes a list of blocks."""
    if type(content) is list:
        return [_part(p) for p in content]
    return text_of(content)


def _blocks(content: Any) -> list[Any]:
    if type(content) is list:
        return content
    return [{"type": "text", "text": content}] if content else []


def _append(turns: list[dict[str, Any]], role: str, content: Any) -> None:
    """Add a turn, merging it into the previous one when the role repeats."""
    if turns and turns[-1]["role"] == role:
        last = turns[-1]
        last["content"] = _blocks(last["content"]) + _blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _thinking_block(message: dict[str, Any]) -> dict[str, Any] | None:
    """The signed thinking block an assistant message hands back, if it carries one."""
    text, signature = message.get("reasoning_content"), message.get("reasoning_signature")
    if text is None or not signature:
        return None
    return {"type": "thinking", "thinking": text, "signature": signature}


def _assistant(message: dict[str, Any]) -> Any:
    content = _content(message.get("content"))
    calls = message.get("tool_calls")
    thinking = _thinking_block(message)
    if not calls and thinking is None:
        return content
    blocks = _blocks(content)
    if thinking is not None:  # before the text and the tool calls, as the API requires
        blocks.insert(0, thinking)
    for call in calls or ():
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": fn.get("name") or "",
                "input": args_object(fn.get("arguments")),
            }
        )
    return blocks


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    if type(fn) is not dict:  # already an Anthropic tool (e.g. a server tool): as written
        return tool
    out: dict[str, Any] = {"name": fn.get("name")}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if type(choice) is str:
        out = _TOOL_CHOICE.get(choice)
    elif type(choice) is dict:
        fn = choice.get("function")
        if type(fn) is dict:
            out = {"type": "tool", "name": fn.get("name")}
        else:  # already Anthropic's shape
            out = choice
    else:
        out = None
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def _stops(stop: Any) -> list[str] | None:
    """Stop sequences without the whitespace-only ones Anthropic refuses."""
    kept = [s for s in stop_list(stop) or () if type(s) is not str or s.strip()]
    return kept or None


def _output_config(fmt: Any) -> dict[str, Any] | None:
    """``response_format`` json_schema as ``output_config`` (structured outputs; no beta header
    since the API made it generally available). json_object has no equivalent: None."""
    if type(fmt) is not dict or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if type(spec) is dict else None
    if type(schema) is not dict:
        return None
    return {"format": {"type": "json_schema", "schema": schema}}


def _thinking(request: dict[str, Any], limit: Any) -> dict[str, Any] | None:
    """The request's own ``thinking``, or its ``reasoning_effort`` as a budget under ``limit``
    (None: no limit was asked, so max_tokens makes room for it)."""
    part = native_of(request)
    native = part.get("thinking") if part is not None else request.get("thinking")
    if type(native) is dict:
        return native
    budget = _BUDGET.get(str(request.get("reasoning_effort")))
    if budget is None or _forces_tool(request):
        return None
    if limit is not None:
        budget = min(budget, max(_MIN_BUDGET, limit // 2))
        if budget >= limit:
            return None
    return {"type": "enabled", "budget_tokens": budget}


def _forces_tool(request: dict[str, Any]) -> bool:
    """A tool_choice that forces a call (Anthropic refuses thinking with one)."""
    choice = request.get("tool_choice")
    if not request.get("tools"):
        return False
    if type(choice) is dict:
        return choice.get("type") in ("function", "any", "tool")
    return choice == "required"


def _thinks(thinking: dict[str, Any] | None) -> bool:
    return thinking is not None and thinking.get("type") in ("enabled", "adaptive")


def _limit(request: dict[str, Any]) -> Any:
    limit = request.get("max_tokens")
    return request.get("max_completion_tokens") if limit is None else limit


def _clamp(temperature: Any) -> Any:
    """Anthropic accepts 0..1 where OpenAI accepts 0..2: cap it rather than fail the attempt."""
    if temperature is not None and temperature > 1:
        return 1.0
    return temperature


def _format_notes(fmt: Any) -> list[str]:
    if type(fmt) is not dict or fmt.get("type") in (None, "text"):
        return []
    if fmt.get("type") == "json_object":
        return [
            "response_format json_object is not sent (Anthropic has no JSON mode; use "
            "json_schema, which becomes output_config.format)"
        ]
    if _output_config(fmt) is None:
        return [
            f"response_format {fmt.get('type')!r} is not sent (only json_schema with a "
            "schema maps to output_config.format)"
        ]
    return []


def _thinking_notes(request: dict[str, Any]) -> list[str]:
    effort = request.get("reasoning_effort")
    limit = _limit(request)
    thinking = _thinking(request, limit)
    out = []
    if effort is not None and type(request.get("thinking")) is not dict:
        if thinking is not None:
            out.append(
                f"reasoning_effort {effort!r} is sent as thinking budget_tokens {thinking['budget_tokens']}"
            )
        elif effort in _BUDGET and _forces_tool(request):
            out.append(
                f"reasoning_effort {effort!r} is not sent: Anthropic refuses thinking "
                "with a tool_choice that forces a tool call"
            )
        elif effort in _BUDGET:
            out.append(
                f"reasoning_effort {effort!r} is not sent: thinking needs max_tokens "
                f"above {_MIN_BUDGET} (the request asks {limit})"
            )
        elif effort != "none":
            out.append(f"reasoning_effort {effort!r} is not sent (unknown effort)")
    if _thinks(thinking):
        temperature, top_p = _clamp(request.get("temperature")), request.get("top_p")
        dropped = [
            k
            for k, bad in (
                ("temperature", temperature is not None and temperature != 1),
                ("top_p", top_p is not None and top_p < 0.95),
                ("top_k", request.get("top_k") is not None),
            )
            if bad
        ]
        if dropped:
            out.append(f"not sent with thinking on (Anthropic refuses them): {', '.join(dropped)}")
    return out


# -- response --------------------------------------------------------------------------------------


def _finish(reason: Any) -> str | None:
    if reason is None:
        return None
    if type(reason) is not str:
        fail(f"stop_reason: expected a string, got {reason!r}")
    return _FINISH.get(reason, "stop")


_COUNTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _counts(usage: dict[str, Any]) -> dict[str, int]:
    """The token counts ``usage`` carries (absent or null ones left out), thinking tokens too."""
    out = {key: tokens(usage, key, "usage") for key in _COUNTS if usage.get(key) is not None}
    details = usage.get("output_tokens_details")
    if details is not None:
        details = as_dict(details, "usage.output_tokens_details")
        if details.get("thinking_tokens") is not None:
            out["thinking_tokens"] = tokens(details, "thinking_tokens", "usage.output_tokens_details")
    return out


def _usage(counts: dict[str, int]) -> Usage:
    """Prompt size is the uncached input plus what was read from and written to the cache."""
    read = counts.get("cache_read_input_tokens", 0)
    write = counts.get("cache_creation_input_tokens", 0)
    return Usage(
        counts.get("input_tokens", 0) + read + write,
        counts.get("output_tokens", 0),
        read,
        write,
        counts.get("thinking_tokens", 0),
    )


def _thought(block: dict[str, Any], i: int) -> ReasoningBlock:
    """A ``thinking`` or ``redacted_thinking`` block."""
    if block.get("type") == "redacted_thinking":
        return ReasoningBlock("anthropic", redacted=opt_str(block.get("data"), f"content[{i}].data") or "")
    return ReasoningBlock(
        "anthropic",
        opt_str(block.get("thinking"), f"content[{i}].thinking") or "",
        opt_str(block.get("signature"), f"content[{i}].signature"),
    )


class AnthropicKind(Kind):
    name = "anthropic"
    description = "Anthropic Messages (/v1/messages)"
    default_base_url = "https://api.anthropic.com/v1"
    default_template = "anthropic/chat.json.j2"
    stream_format = "sse"

    def url(self, base_url: str, model: str, stream: bool) -> str:
        return base_url.rstrip("/") + "/messages"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def context(
        self, request: dict[str, Any], model: str, stream: bool, options: WireOptions = DEFAULT_WIRE
    ) -> dict[str, Any]:
        """The template context: the request in Anthropic's shape, thinking's limits applied
        (an Anthropic-native request: as its client wrote it)."""
        part = native_of(request)
        if part is not None:
            return _native_context(request, part, model, stream)
        get = request.get
        system, turns = _conversation(request)
        tools = get("tools") or None
        limit = _limit(request)
        thinking = _thinking(request, limit)
        thinks = _thinks(thinking)
        top_p = get("top_p")
        temperature = _clamp(get("temperature"))
        return {
            "request": request,
            "model": model,
            "stream": stream,
            "system": system,
            "messages": turns,
            "max_tokens": _max_tokens(limit, thinking if thinks else None),
            # thinking takes temperature 1 only, no top_k, top_p from 0.95
            "temperature": None if thinks and temperature != 1 else temperature,
            "top_p": None if thinks and top_p is not None and top_p < 0.95 else top_p,
            "top_k": None if thinks else get("top_k"),
            "stop_sequences": _stops(get("stop")),
            "tools": [_tool(t) for t in tools] if tools else None,
            "tool_choice": _tool_choice(get("tool_choice"), get("parallel_tool_calls")) if tools else None,
            "thinking": thinking,
            "output_config": _output_config(get("response_format")),
            "metadata": _metadata(request),
            "extra": {},
        }

    def request_headers(self, request: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """The client's ``anthropic-beta`` flags and ``anthropic-version`` (well-formed ones only)."""
        part = native_of(request)
        if part is None:
            return ()
        out = []
        flags = [f for f in part.get("beta") or () if type(f) is str and BETA.fullmatch(f)]
        if flags:
            out.append(("anthropic-beta", ",".join(flags)))
        version = part.get("version")
        if type(version) is str and VERSION_FORM.fullmatch(version) and version != VERSION:
            out.append(("anthropic-version", version))
        return tuple(out)

    def count_url(self, base_url: str) -> str | None:
        return base_url.rstrip("/") + "/messages/count_tokens"

    def count_body(self, request: dict[str, Any], model: str) -> dict[str, Any]:
        """What ``/v1/messages/count_tokens`` takes of the Messages body."""
        context = self.context(request, model, False)
        body: dict[str, Any] = {"model": model, "messages": context["messages"]}
        for key in _COUNTED:
            if context.get(key) is not None:
                body[key] = context[key]
        return body

    def parse_count(self, data: Any) -> int:
        count = as_dict(data, "count").get("input_tokens")
        if type(count) is not int or count < 0:
            raise WireError(f"input_tokens: expected a count, got {count!r}")
        return count

    def notes(self, request: dict[str, Any], model: str, options: WireOptions = DEFAULT_WIRE) -> list[str]:
        if native_of(request) is not None:
            return []  # sent as its Anthropic client wrote it
        get = request.get
        out = []
        stops = stop_list(get("stop")) or []
        blank = [s for s in stops if type(s) is str and not s.strip()]
        if blank:
            out.append(
                f"stop sequences of whitespace only are not sent (Anthropic refuses "
                f"them): {', '.join(repr(s) for s in blank)}"
            )
        temperature = get("temperature")
        if temperature is not None and temperature > 1:
            out.append(f"temperature {temperature:g} is sent as 1 (Anthropic's maximum)")
        out += _format_notes(get("response_format"))
        out += _thinking_notes(request)
        for i, m in enumerate(get("messages") or ()):
            if m.get("reasoning_content") is not None and not m.get("reasoning_signature"):
                out.append(
                    f"messages[{i}].reasoning_content is not sent (Anthropic takes "
                    "thinking back only with its reasoning_signature)"
                )
        return out + unsent(request, "anthropic", _MAPPED)

    def parse(self, data: Any) -> Parsed:
        body = as_dict(data, "response")
        if body.get("type") == "error":
            fail(error_text(body))
        texts: list[str] = []
        calls: list[ToolCall] = []
        thoughts: list[ReasoningBlock] = []
        for i, raw in enumerate(as_list(body.get("content"), "content")):
            block = as_dict(raw, f"content[{i}]")
            kind = block.get("type")
            if kind == "text":
                texts.append(opt_str(block.get("text"), f"content[{i}].text") or "")
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        opt_str(block.get("id"), f"content[{i}].id") or "",
                        opt_str(block.get("name"), f"content[{i}].name") or "",
                        dump_args(as_dict(block.get("input", {}), f"content[{i}].input")),
                    )
                )
            elif kind in ("thinking", "redacted_thinking"):
                thoughts.append(_thought(block, i))
            # server-tool blocks are not part of the answer
        return Parsed(
            text="".join(texts),
            finish_reason=_finish(body.get("stop_reason")),
            usage=_usage(_counts(opt_dict(body.get("usage"), "usage"))),
            tool_calls=tuple(calls),
            model=opt_str(body.get("model"), "model"),
            reasoning=tuple(thoughts),
            native={k: body[k] for k in _NATIVE if k in body},
        )

    def stream_parser(self) -> StreamParser:
        return AnthropicStream()

    def models_url(self, base_url: str) -> str:
        return base_url.rstrip("/") + "/models?limit=1000"

    def parse_models(self, data: Any) -> list[str]:
        return names(as_dict(data, "models").get("data"), "id", "data")


class AnthropicStream(SSEParser):
    """message_start, content_block_start/delta/stop per block, message_delta, message_stop.

    Tool calls are numbered in the order their ``tool_use`` blocks start (OpenAI's ``index``),
    not by content-block index, which also counts text and thinking blocks. ``thinking`` blocks
    become ``ReasoningDelta`` events (``signature_delta`` as a delta with the signature).

    What the unified events do not model comes as ``NativeEvent``s, the events as sent: every
    event of a block of another type (server tools' ``server_tool_use`` and ``*_tool_result``,
    ``compaction``, types Anthropic adds later), ``citations_delta`` and unknown deltas, and
    ``message_delta``. The start of a text block that opens right after another text block, or
    carries more than its text (``citations``), comes too, held until the block's first delta
    so that it never makes a stream answered earlier than its first content (a failover stays
    possible until then); so does ``message_start`` (the message's id and input usage), held
    until the first event of the stream.
    """

    kind = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._counts: dict[str, int] = {}
        self._native: set[int] = set()  # the indexes of blocks relayed as native events
        self._last: Any = None  # the type of the block started last
        self._held: NativeEvent | None = None  # a text block's start, sent with its first delta
        self._opening: NativeEvent | None = None  # message_start, sent with the first event

    def event(self, data: dict[str, Any]) -> Deltas:
        out = self._event(data)
        opening = self._opening
        if opening is not None and out:
            self._opening = None
            return [opening, *out]
        return out

    def _event(self, data: dict[str, Any]) -> Deltas:
        kind = data.get("type")
        if kind == "content_block_delta":
            if data.get("index") in self._native:
                return [NativeEvent("anthropic", data)]
            delta = as_dict(data.get("delta"), "content_block_delta.delta")
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = opt_str(delta.get("text"), "text_delta.text")
                return self._with_held(TextDelta(text)) if text else []
            if dtype == "input_json_delta":
                block = data.get("index")
                index = self._tools.get(block) if type(block) is int else None
                part = opt_str(delta.get("partial_json"), "input_json_delta.partial_json")
                if index is None or not part:
                    return []
                return [ToolCallDelta(index, arguments=part)]
            if dtype == "thinking_delta":
                text = opt_str(delta.get("thinking"), "thinking_delta.thinking")
                return [self.thoughts.text(text)] if text else []
            if dtype == "signature_delta":
                sig = opt_str(delta.get("signature"), "signature_delta.signature")
                return [self.thoughts.sign(sig)] if sig else []
            return self._with_held(NativeEvent("anthropic", data))  # citations_delta, future deltas
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            return [NativeEvent("anthropic", data)] if data.get("index") in self._native else []
        if kind == "message_start":
            message = as_dict(data.get("message"), "message_start.message")
            self.model = opt_str(message.get("model"), "message_start.message.model")
            self._usage(message.get("usage"))
            self._opening = NativeEvent("anthropic", data)
        elif kind == "message_delta":
            delta = opt_dict(data.get("delta"), "message_delta.delta")
            reason = delta.get("stop_reason")
            if reason is not None:
                self.finish_reason = _finish(reason)
            self._usage(data.get("usage"))
            return [NativeEvent("anthropic", data)]
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            fail(error_text(data))
        return []  # ping, unknown future events

    def _with_held(self, event: TextDelta | NativeEvent) -> Deltas:
        held = self._held
        if held is None:
            return [event]
        self._held = None
        return [held, event]

    def _block_start(self, data: dict[str, Any]) -> Deltas:
        block = as_dict(data.get("content_block"), "content_block_start.content_block")
        kind = block.get("type")
        last, self._last = self._last, kind
        self._held = None
        self.thoughts.close()  # a new block ends any thinking before it
        if kind == "thinking":
            text = opt_str(block.get("thinking"), "thinking.thinking")
            return [self.thoughts.text(text)] if text else []
        if kind == "redacted_thinking":
            return [self.thoughts.redact(opt_str(block.get("data"), "redacted_thinking.data") or "")]
        if kind == "tool_use":
            index = data.get("index")
            if type(index) is not int:
                fail(f"content_block_start.index: expected an integer, got {index!r}")
            ordinal = self._tools[index] = len(self._tools)
            return [
                ToolCallDelta(
                    ordinal,
                    id=opt_str(block.get("id"), "tool_use.id"),
                    name=opt_str(block.get("name"), "tool_use.name"),
                )
            ]
        if kind == "text":
            text = opt_str(block.get("text"), "text.text")
            if last == "text" or block.keys() - {"type", "text"}:
                self._held = NativeEvent("anthropic", {**data, "content_block": {**block, "text": ""}})
            return self._with_held(TextDelta(text)) if text else []
        index = data.get("index")
        if type(index) is not int:
            fail(f"content_block_start.index: expected an integer, got {index!r}")
        self._native.add(index)
        return [NativeEvent("anthropic", data)]

    def _usage(self, raw: Any) -> None:
        if raw is None:
            return
        # message_delta's counts are cumulative and final: each one it carries replaces
        # message_start's, the ones it leaves out keep theirs (as the anthropic SDK does)
        self._counts.update(_counts(as_dict(raw, "usage")))
        self.usage = _usage(self._counts)


KIND = AnthropicKind()


def _conversation(request: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The system text (the request's, then its system messages) and the alternating turns."""
    system: list[str] = []
    if request.get("system"):
        system.append(text_of(request.get("system")))
    turns: list[dict[str, Any]] = []
    for m in request.get("messages") or ():
        role = m.get("role")
        if role == "user":
            _append(turns, "user", _content(m.get("content")))
        elif role == "assistant":
            content = _assistant(m)
            if content:
                _append(turns, "assistant", content)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id") or "",
                "content": _content(m.get("content")),
            }
            _append(turns, "user", [result])
        elif role in ("system", "developer"):
            text = text_of(m.get("content"))
            if text:
                system.append(text)
    return "\n\n".join(system) or None, turns


def _metadata(request: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's ``user`` as Anthropic's ``metadata.user_id`` (routing metadata is never sent)."""
    user = request.get("user")
    return {"user_id": user} if type(user) is str and user else None


def _native_context(
    request: dict[str, Any], part: dict[str, Any], model: str, stream: bool
) -> dict[str, Any]:
    """The template context of an Anthropic-native request: its own fields as written."""
    get = request.get
    system, turns = (None, None) if "messages" in part else _conversation(request)
    tools = part.get("tools") if "tools" in part else get("tools")
    extra = part.get("extra")
    return {
        "request": request,
        "model": model,
        "stream": stream,
        "system": part.get("system") if "messages" in part else system,
        "messages": part.get("messages") if turns is None else turns,
        "max_tokens": _max_tokens(_limit(request), None),
        "temperature": get("temperature"),
        "top_p": get("top_p"),
        "top_k": get("top_k"),
        "stop_sequences": stop_list(get("stop")) or None,
        "tools": tools or None,
        "tool_choice": part.get("tool_choice") if "tools" in part else None,
        "thinking": part.get("thinking"),
        "output_config": None,
        "metadata": _metadata(request),
        "extra": extra if type(extra) is dict else {},
    }


def _max_tokens(limit: Any, thinking: dict[str, Any] | None) -> Any:
    """The written limit, else the default plus the thinking budget (it counts against max_tokens)."""
    if limit is not None:
        return limit
    budget = thinking.get("budget_tokens") if thinking else None
    return DEFAULT_MAX_TOKENS + (budget if type(budget) is int else 0)
