"""Ollama's native /api/chat: a unified request in, an Ollama chat body out, NDJSON back.

The mapping: content is plain text with images as base64 ``images``; tool-call arguments are
objects, not JSON text; sampling settings go in ``options`` (max_tokens -> num_predict);
``response_format`` becomes ``format``; ``stream`` is always sent (Ollama streams by default).
Ollama has no ``tool_choice``: "none" sends no tools, a named function sends that tool alone
(not forced), "required" is not sent. ``reasoning_effort`` becomes ``think`` (a level for gpt-oss,
which takes levels, else true/false); an assistant message's ``reasoning_content`` goes back as
``thinking``. ``notes`` names what is left out.
"""

from __future__ import annotations

from typing import Any

from engine.providers._wire import (
    Deltas,
    NDJSONParser,
    args_object,
    as_dict,
    dump_args,
    error_text,
    fail,
    image_url_of,
    new_call_id,
    opt_dict,
    opt_list,
    opt_str,
    parse_data_url,
    stop_list,
    text_of,
    tokens,
)
from engine.providers.base import DEFAULT_WIRE, Kind, Parsed, StreamParser, WireOptions, unsent
from engine.providers.native import native_notes
from engine.result import ReasoningBlock, TextDelta, ToolCall, ToolCallDelta, Usage

__all__ = ["KIND", "OllamaKind"]

# options fields taken from request keys of the same meaning
_OPTIONS = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)


_LEVEL = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_MAPPED = frozenset({"seed", "presence_penalty", "frequency_penalty"})  # of base.OPENAI_ONLY


# -- request ---------------------------------------------------------------------------------------


def _images(content: Any) -> list[str]:
    """Base64 images of the content's image parts (Ollama cannot fetch URLs: those are left out)."""
    out = []
    for part in content:
        if type(part) is dict and part.get("type") == "image_url":
            url = image_url_of(part)
            data = parse_data_url(url) if url is not None else None
            if data is not None:
                out.append(data[1])
    return out


def _message(m: dict[str, Any], called: dict[str, str]) -> dict[str, Any] | None:
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(content)}
    out: dict[str, Any] = {"role": role, "content": text_of(content)}
    if role == "user":
        if type(content) is list:
            images = _images(content)
            if images:
                out["images"] = images
    elif role == "assistant":
        thinking = m.get("reasoning_content")
        if type(thinking) is str and thinking:
            out["thinking"] = thinking
        calls = m.get("tool_calls")
        if calls:
            out["tool_calls"] = [_tool_call(c, called) for c in calls]
    elif role == "tool":
        call_id = m.get("tool_call_id") or ""
        name = m.get("name") or called.get(call_id)
        if name:
            out["tool_name"] = name
    else:
        return None
    return out


def _tool_call(call: dict[str, Any], called: dict[str, str]) -> dict[str, Any]:
    fn = call.get("function") or {}
    name = fn.get("name") or ""
    called[call.get("id") or ""] = name
    return {"function": {"name": name, "arguments": args_object(fn.get("arguments"))}}


def _options(request: dict[str, Any]) -> dict[str, Any]:
    get = request.get
    given = get("options")
    options = dict(given) if type(given) is dict else {}
    for key, out in _OPTIONS:
        if get(key) is not None:
            options[out] = get(key)
    max_tokens = get("max_tokens")
    if max_tokens is None:
        max_tokens = get("max_completion_tokens")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    stop = stop_list(get("stop"))
    if stop is not None:
        options["stop"] = stop
    return options


def _tools(tools: list[Any] | None, choice: Any) -> list[Any] | None:
    """The tools to send: none for "none", the named one alone for a named function."""
    if not tools or choice == "none":
        return None
    if type(choice) is dict:
        fn = choice.get("function")
        name = fn.get("name") if type(fn) is dict else None
        named = [
            t
            for t in tools
            if type(t) is dict and type(t.get("function")) is dict and t["function"].get("name") == name
        ]
        return named or tools
    return tools


def _think(request: dict[str, Any], model: str) -> Any:
    """``think`` as the request gave it, or from its ``reasoning_effort``."""
    think = request.get("think")
    effort = request.get("reasoning_effort")
    if think is not None or type(effort) is not str:
        return think
    if effort == "none":
        return False
    level = _LEVEL.get(effort)
    if level is None:
        return None
    return level if "gpt-oss" in model else True


def _format(fmt: Any) -> Any:
    if type(fmt) is not dict:
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if type(schema) is dict and schema.get("schema") is not None:
            return schema["schema"]
        return "json"
    return "json" if kind == "json_object" else None


# -- response --------------------------------------------------------------------------------------


def _finish(body: dict[str, Any], tool_calls: bool) -> str | None:
    reason = body.get("done_reason")
    if reason == "length":
        return "length"
    if tool_calls:
        return "tool_calls"
    if reason is not None or body.get("done") is True:
        return "stop"  # stop, load, unload
    return None


def _calls(message: dict[str, Any]) -> list[ToolCall]:
    out = []
    for i, raw in enumerate(opt_list(message.get("tool_calls"), "message.tool_calls")):
        what = f"message.tool_calls[{i}]"
        call = as_dict(raw, what)
        fn = as_dict(call.get("function"), f"{what}.function")
        name = opt_str(fn.get("name"), f"{what}.function.name")
        if not name:
            fail(f"{what}.function.name: missing")
        args = fn.get("arguments")
        text = args if type(args) is str else dump_args(opt_dict(args, f"{what}.arguments"))
        out.append(ToolCall(opt_str(call.get("id"), f"{what}.id") or new_call_id(), name, text))
    return out


def _usage(body: dict[str, Any]) -> Usage:
    return Usage(tokens(body, "prompt_eval_count", "response"), tokens(body, "eval_count", "response"))


class OllamaKind(Kind):
    name = "ollama"
    description = "Ollama's native /api/chat (NDJSON streams)"
    default_base_url = "http://localhost:11434"
    default_template = "ollama/chat.json.j2"
    stream_format = "ndjson"

    def url(self, base_url: str, model: str, stream: bool) -> str:
        return base_url.rstrip("/") + "/api/chat"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:  # Ollama itself takes no key; a proxy in front of it may
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def context(
        self, request: dict[str, Any], model: str, stream: bool, options: WireOptions = DEFAULT_WIRE
    ) -> dict[str, Any]:
        get = request.get
        messages: list[dict[str, Any]] = []
        if get("system"):
            messages.append({"role": "system", "content": text_of(get("system"))})
        called: dict[str, str] = {}  # tool call id -> function name, for tool_name
        for m in get("messages") or ():
            out = _message(m, called)
            if out is not None:
                messages.append(out)
        return {
            "request": request,
            "model": model,
            "stream": stream,
            "messages": messages,
            "options": _options(request),
            "format": _format(get("response_format")),
            "tools": _tools(get("tools"), get("tool_choice")),
            "keep_alive": get("keep_alive"),
            "think": _think(request, model),
        }

    def notes(self, request: dict[str, Any], model: str, options: WireOptions = DEFAULT_WIRE) -> list[str]:
        get = request.get
        out = []
        choice = get("tool_choice")
        if get("tools") and choice not in (None, "auto", "none"):
            shown = choice if type(choice) is str else "a named function"
            forced = " (its tool is sent alone)" if type(choice) is dict else ""
            out.append(
                f"tool_choice {shown!r} is not sent: Ollama has no tool_choice, the model "
                f"may answer without a tool call{forced}"
            )
        if get("tools") and get("parallel_tool_calls") is False:
            out.append("parallel_tool_calls false is not sent (Ollama has no such setting)")
        effort = get("reasoning_effort")
        if effort is not None and get("think") is None:
            think = _think(request, model)
            out.append(
                f"reasoning_effort {effort!r} is not sent (unknown effort)"
                if think is None
                else f"reasoning_effort {effort!r} is sent as think {think!r}"
            )
        return out + unsent(request, "ollama", _MAPPED) + native_notes(request, "ollama")

    def parse(self, data: Any) -> Parsed:
        body = as_dict(data, "response")
        if body.get("error"):
            fail(error_text(body))
        message = as_dict(body.get("message"), "message")
        calls = _calls(message)
        thought = opt_str(message.get("thinking"), "message.thinking")
        return Parsed(
            text=opt_str(message.get("content"), "message.content") or "",
            finish_reason=_finish(body, bool(calls)),
            usage=_usage(body),
            tool_calls=tuple(calls),
            model=opt_str(body.get("model"), "model"),
            reasoning=(ReasoningBlock("ollama", thought),) if thought else (),
        )

    def stream_parser(self) -> StreamParser:
        return OllamaStream()

    def models_url(self, base_url: str) -> str:
        return base_url.rstrip("/") + "/api/tags"

    def parse_models(self, data: Any) -> list[str]:
        """Installed models; ``name:latest`` is also listed as ``name``, as Ollama accepts both."""
        out = []
        for raw in opt_list(as_dict(data, "models").get("models"), "models"):
            name = as_dict(raw, "models[]").get("name")
            if type(name) is str:
                out.append(name)
                if name.endswith(":latest"):
                    out.append(name[:-7])
        return out


class OllamaStream(NDJSONParser):
    """One chat object per line, each with a ``message`` fragment; the last has ``done: true``,
    ``done_reason`` and the token counts. Tool calls arrive whole, in one line; ``thinking``
    fragments become ``ReasoningDelta`` events."""

    kind = "ollama"

    def __init__(self) -> None:
        super().__init__()
        self._calls = 0

    def event(self, data: dict[str, Any]) -> Deltas:
        if data.get("error"):
            fail(error_text(data))
        model = data.get("model")
        if type(model) is str:
            self.model = model
        out: Deltas = []
        message = data.get("message")
        if message is not None:
            message = as_dict(message, "message")
            thought = message.get("thinking")
            if thought:
                out.append(self.thoughts.text(opt_str(thought, "message.thinking") or ""))
            content = opt_str(message.get("content"), "message.content")
            if content:
                out.append(TextDelta(content))
            for call in _calls(message):
                out.append(ToolCallDelta(self._calls, call.id, call.name, call.arguments))
                self._calls += 1
        if data.get("done") is True:
            self.finish_reason = _finish(data, self._calls > 0)
            self.usage = _usage(data)
            self.done = True
        return out


KIND = OllamaKind()
