"""OpenAI Chat Completions: a unified request in, the same shape out (it is the lingua franca).

Also the wire of Groq, Together, Fireworks, Mistral, DeepSeek, vLLM, LM Studio, OpenRouter and
Ollama's /v1. The request is passed through; request keys this kind does not name (seed, user,
logprobs, ...) are passed through too, as ``extra``. Two things are shaped: the token limit goes
out as ``max_completion_tokens`` to the o-series and gpt-5 reasoning models (they refuse
``max_tokens``; ``max_tokens_field`` in routes.yaml overrides), and assistant messages lose
``reasoning_content`` (DeepSeek refuses it on some models; ``send_reasoning_content`` keeps it)
and ``reasoning_signature`` (Anthropic's, meaningless here).

System messages are not rewritten as ``developer`` for reasoning models: OpenAI takes ``system``
on every current one (it is treated as ``developer`` there), while o1-mini and o1-preview, which
refuse ``system``, refuse ``developer`` too; ``notes`` says so for those.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from engine.providers._wire import (
    Deltas,
    SSEParser,
    as_dict,
    as_list,
    dump_args,
    error_text,
    fail,
    names,
    new_call_id,
    opt_dict,
    opt_list,
    opt_str,
    tokens,
)
from engine.providers.base import DEFAULT_WIRE, Kind, Parsed, StreamParser, WireOptions
from engine.providers.native import native_notes
from engine.result import ReasoningBlock, TextDelta, ToolCall, ToolCallDelta, Usage

__all__ = ["KIND", "OpenAIKind", "is_reasoning_model"]

# Request keys with a place of their own in the template; everything else goes out as ``extra``.
_NAMED = frozenset(
    {
        "model",
        "messages",
        "system",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "metadata",
        "stream",
        "stream_options",
        "anthropic",  # an Anthropic client's native part (engine.providers.native): never sent
    }
)

# OpenAI's reasoning models, which take max_completion_tokens only (a name with a "/" is a
# gateway's, e.g. OpenRouter's "openai/o3", which speaks its own dialect: not matched)
_REASONING = re.compile(r"(?:o[1-9]|gpt-5)(?:$|[-.])")
_NO_SYSTEM = re.compile(r"o1-(?:mini|preview)")  # they refuse system and developer messages
_UNIFIED = ("reasoning_content", "reasoning_signature")  # assistant fields this kind may drop


def is_reasoning_model(model: str) -> bool:
    """True for OpenAI's o-series and gpt-5 models, which refuse ``max_tokens``."""
    return _REASONING.match(model) is not None


def _limit_field(model: str, options: WireOptions) -> str | None:
    """The one field the token limit goes out as, or None to send what the request wrote."""
    if options.max_tokens_field is not None:
        return options.max_tokens_field
    return "max_completion_tokens" if is_reasoning_model(model) else None


def _limits(request: dict[str, Any], model: str, options: WireOptions) -> tuple[Any, Any]:
    """``(max_tokens, max_completion_tokens)`` as sent."""
    given, newer = request.get("max_tokens"), request.get("max_completion_tokens")
    field = _limit_field(model, options)
    if field == "max_completion_tokens":
        return None, newer if newer is not None else given
    if field == "max_tokens":
        return given if given is not None else newer, None
    return given, newer


def _messages(messages: list[dict[str, Any]], options: WireOptions) -> list[dict[str, Any]]:
    """The messages without the unified reasoning fields this provider must not receive (copied
    only when one has them)."""
    drop = _UNIFIED[1:] if options.send_reasoning_content else _UNIFIED
    if not any(k in m for m in messages for k in drop):
        return messages
    return [{k: v for k, v in m.items() if k not in drop} for m in messages]


_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _finish(reason: Any, tool_calls: bool) -> str | None:
    if reason is None:
        return "tool_calls" if tool_calls else None
    if type(reason) is not str:
        fail(f"finish_reason: expected a string, got {reason!r}")
    out = _FINISH.get(reason, "stop")
    # A forced tool_choice ends with "stop" although the answer is a tool call; say what it is.
    return "tool_calls" if tool_calls and out == "stop" else out


def _usage(data: Any) -> Usage:
    """prompt_tokens includes the cached ones, completion_tokens the reasoning ones."""
    usage = as_dict(data, "usage")
    prompt = opt_dict(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details")
    completion = opt_dict(usage.get("completion_tokens_details"), "usage.completion_tokens_details")
    return Usage(
        tokens(usage, "prompt_tokens", "usage"),
        tokens(usage, "completion_tokens", "usage"),
        cache_read_tokens=tokens(prompt, "cached_tokens", "usage.prompt_tokens_details"),
        reasoning_tokens=tokens(completion, "reasoning_tokens", "usage.completion_tokens_details"),
    )


def _reasoning(message: dict[str, Any], what: str) -> str | None:
    """The reasoning text of a message or delta: ``reasoning_content`` (DeepSeek, vLLM) or
    ``reasoning`` (OpenRouter, Groq)."""
    key = "reasoning_content"
    value = message.get(key)
    if value is None:
        key = "reasoning"
        value = message.get(key)
    if value is None or type(value) is str:
        return value
    fail(f"{what}.{key}: expected a string, got {type(value).__name__}")


def _content(content: Any, what: str) -> str:
    if type(content) is str:
        return content
    if content is None:
        return ""
    if type(content) is list:  # some compatible servers answer with content parts
        return "".join(
            p["text"]
            for p in content
            if type(p) is dict and p.get("type") == "text" and type(p.get("text")) is str
        )
    fail(f"{what}: expected a string, got {type(content).__name__}")


def _arguments(value: Any, what: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is dict:  # some compatible servers send the object itself
        return dump_args(value)
    fail(f"{what}: expected JSON text, got {type(value).__name__}")


def _tool_call(raw: Any, what: str) -> ToolCall:
    call = as_dict(raw, what)
    fn = as_dict(call.get("function"), f"{what}.function")
    name = opt_str(fn.get("name"), f"{what}.function.name")
    if not name:
        fail(f"{what}.function.name: missing")
    return ToolCall(
        opt_str(call.get("id"), f"{what}.id") or new_call_id(),
        name,
        _arguments(fn.get("arguments"), f"{what}.function.arguments"),
    )


class OpenAIKind(Kind):
    name = "openai"
    description = (
        "OpenAI Chat Completions, and every server that speaks it (Groq, Together, "
        "Fireworks, Mistral, DeepSeek, vLLM, LM Studio, OpenRouter) via base_url"
    )
    default_base_url = "https://api.openai.com/v1"
    default_template = "openai/chat.json.j2"
    stream_format = "sse"
    wire_keys = frozenset({"max_tokens_field", "send_reasoning_content"})
    compatible = MappingProxyType(
        {
            "groq": "https://api.groq.com/openai/v1",
            "together": "https://api.together.xyz/v1",
            "fireworks": "https://api.fireworks.ai/inference/v1",
            "mistral": "https://api.mistral.ai/v1",
            "deepseek": "https://api.deepseek.com/v1",
            "openrouter": "https://openrouter.ai/api/v1",
            "perplexity": "https://api.perplexity.ai",
            "xai": "https://api.x.ai/v1",
            "cerebras": "https://api.cerebras.ai/v1",
            "vllm": "http://localhost:8000/v1",
            "lmstudio": "http://localhost:1234/v1",
            "azure": "https://YOUR-RESOURCE.openai.azure.com/openai/v1",
        }
    )

    def url(self, base_url: str, model: str, stream: bool) -> str:
        return base_url.rstrip("/") + "/chat/completions"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def context(
        self, request: dict[str, Any], model: str, stream: bool, options: WireOptions = DEFAULT_WIRE
    ) -> dict[str, Any]:
        get = request.get
        messages = _messages(get("messages") or [], options)
        system = get("system")
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        tools = get("tools") or None
        stream_options = None
        if stream:
            given = get("stream_options")
            stream_options = (
                {**given, "include_usage": True} if type(given) is dict else {"include_usage": True}
            )
        max_tokens, max_completion_tokens = _limits(request, model, options)
        return {
            "request": request,
            "model": model,
            "stream": stream,
            "messages": messages,
            "temperature": get("temperature"),
            "top_p": get("top_p"),
            "max_tokens": max_tokens,
            "max_completion_tokens": max_completion_tokens,
            "stop": get("stop") or None,
            "tools": tools,
            "tool_choice": get("tool_choice") if tools else None,
            "parallel_tool_calls": get("parallel_tool_calls") if tools else None,
            "response_format": get("response_format"),
            "stream_options": stream_options,
            "extra": {k: v for k, v in request.items() if k not in _NAMED and v is not None},
        }

    def notes(self, request: dict[str, Any], model: str, options: WireOptions = DEFAULT_WIRE) -> list[str]:
        out = []
        get = request.get
        field = _limit_field(model, options)
        why = "max_tokens_field" if options.max_tokens_field else "a reasoning model"
        if field == "max_completion_tokens" and get("max_tokens") is not None:
            out.append(f"max_tokens is sent as max_completion_tokens ({why})")
        if field == "max_tokens" and get("max_completion_tokens") is not None:
            out.append(f"max_completion_tokens is sent as max_tokens ({why})")
        messages = get("messages") or []
        if not options.send_reasoning_content and any("reasoning_content" in m for m in messages):
            out.append(
                "reasoning_content of assistant messages is not sent (send_reasoning_content: true sends it)"
            )
        if _NO_SYSTEM.match(model) and (
            get("system") or any(m.get("role") in ("system", "developer") for m in messages)
        ):
            out.append(
                f"{model} refuses system and developer messages: this request will be "
                "refused (put the instructions in the first user message)"
            )
        if get("top_k") is not None and get("anthropic") is not None:
            out.append("top_k is sent as written (compatible servers take it; OpenAI's own API refuses it)")
        return out + native_notes(request, "openai")

    def parse(self, data: Any) -> Parsed:
        body = as_dict(data, "response")
        if body.get("error") and "choices" not in body:
            fail(error_text(body))
        choices = as_list(body.get("choices"), "choices")
        if not choices:
            fail("choices: empty")
        choice = as_dict(choices[0], "choices[0]")
        message = as_dict(choice.get("message"), "choices[0].message")
        what = "choices[0].message.tool_calls"
        calls = [
            _tool_call(c, f"{what}[{i}]") for i, c in enumerate(opt_list(message.get("tool_calls"), what))
        ]
        legacy = message.get("function_call")
        if legacy is not None and not calls:
            calls.append(_tool_call({"function": legacy}, "choices[0].message.function_call"))
        usage = body.get("usage")
        thought = _reasoning(message, "choices[0].message")
        return Parsed(
            text=_content(message.get("content"), "choices[0].message.content"),
            finish_reason=_finish(choice.get("finish_reason"), bool(calls)),
            usage=_usage(usage) if usage is not None else Usage(),
            tool_calls=tuple(calls),
            model=opt_str(body.get("model"), "model"),
            reasoning=(ReasoningBlock("openai", thought),) if thought else (),
        )

    def stream_parser(self) -> StreamParser:
        return OpenAIStream()

    def models_url(self, base_url: str) -> str:
        return base_url.rstrip("/") + "/models"

    def parse_models(self, data: Any) -> list[str]:
        return names(as_dict(data, "models").get("data"), "id", "data")


class OpenAIStream(SSEParser):
    """``data: {chat.completion.chunk}`` lines, then a usage-only chunk, then ``data: [DONE]``.
    A delta's ``reasoning_content`` (or ``reasoning``) becomes a ``ReasoningDelta``."""

    kind = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._tools = False

    def event(self, data: dict[str, Any]) -> Deltas:
        get = data.get
        if get("error"):
            fail(error_text(data))
        model = get("model")
        if type(model) is str:
            self.model = model
        usage = get("usage")
        if usage is None:
            groq = get("x_groq")
            if type(groq) is dict:  # Groq reports it here
                usage = groq.get("usage")
        if usage is not None:
            self.usage = _usage(usage)
        choices = get("choices")
        if not choices:
            opt_list(choices, "choices")  # (an empty list or null: no delta; else malformed)
            return []
        out: Deltas = []
        for raw in as_list(choices, "choices"):
            choice = as_dict(raw, "choices[]")
            cget = choice.get
            if cget("index", 0) != 0:  # n > 1: the first choice is the answer
                continue
            delta = cget("delta")
            if delta:
                dget = as_dict(delta, "choices[].delta").get
                content = dget("content")
                if len(delta) == 1 and type(content) is str:  # the common chunk: text alone
                    if content:
                        out.append(TextDelta(content))
                else:
                    thought = _reasoning(delta, "delta")
                    if thought:
                        out.append(self.thoughts.text(thought))
                    if content:
                        out.append(TextDelta(_content(content, "delta.content")))
                    for tc in opt_list(dget("tool_calls"), "delta.tool_calls"):
                        out.append(self._tool_delta(as_dict(tc, "delta.tool_calls[]")))
            elif delta is not None:
                as_dict(delta, "choices[].delta")  # a falsy non-object is malformed too
            reason = cget("finish_reason")
            if reason is not None:
                self.finish_reason = _finish(reason, self._tools)
        return out

    def _tool_delta(self, tc: dict[str, Any]) -> ToolCallDelta:
        self._tools = True
        index = tc.get("index", 0)
        if type(index) is not int:
            fail(f"delta.tool_calls[].index: expected an integer, got {index!r}")
        fn = opt_dict(tc.get("function"), "delta.tool_calls[].function")
        return ToolCallDelta(
            index=index,
            id=opt_str(tc.get("id"), "delta.tool_calls[].id"),
            name=opt_str(fn.get("name"), "delta.tool_calls[].function.name"),
            arguments=_arguments(fn.get("arguments"), "delta.tool_calls[].function.arguments"),
        )


KIND = OpenAIKind()
