"""Google Gemini (generativelanguage API): a unified request in, a generateContent body out, and back.

The mapping: turns become ``contents`` with roles user/model and ``parts``; system messages and
the ``system`` prompt become ``systemInstruction``; sampling settings go in ``generationConfig``;
OpenAI tools become ``functionDeclarations`` (their JSON Schema as ``parametersJsonSchema``); tool
calls and results become ``functionCall`` / ``functionResponse`` parts; a tool call's
``extra_content.google.thought_signature`` goes back as its part's ``thoughtSignature``;
``reasoning_effort`` becomes ``thinkingConfig`` (``thinkingLevel`` for Gemini 3, a
``thinkingBudget`` before); ``n``, ``logprobs`` and ``top_logprobs`` become ``candidateCount``,
``responseLogprobs`` and ``logprobs``. ``notes`` names what is left out.
"""

from __future__ import annotations

import mimetypes
import re
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
    new_call_id,
    opt_dict,
    opt_list,
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
    Reasoning,
    StreamParser,
    WireOptions,
    loads,
    unsent,
)
from engine.providers.native import native_notes
from engine.result import ReasoningDelta, TextDelta, ToolCall, ToolCallDelta, Usage

__all__ = ["KIND", "SKIP_SIGNATURE", "GeminiKind"]

# Gemini 3 rejects a replayed functionCall without the thought signature it was issued with. A tool
# call carries it as extra_content.google.thought_signature; a step whose calls carry none (a
# history Gemini did not make) gets the sentinel Google documents for that.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}

# reasoning_effort -> thinkingConfig: Gemini 3 takes a level (and always thinks), 2.5 a budget
_LEVELS = re.compile(r"gemini-[3-9]")
_THINKS = re.compile(r"gemini-(?:2\.5|[3-9])")  # older models take no thinkingConfig
_LEVEL = {"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"}
_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_MAPPED = frozenset(
    {"seed", "presence_penalty", "frequency_penalty", "n", "logprobs", "top_logprobs"}
)  # of base.OPENAI_ONLY

# generationConfig fields taken from request keys of the same meaning
_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("n", "candidateCount"),
    ("logprobs", "responseLogprobs"),
    ("top_logprobs", "logprobs"),
)


# -- request ---------------------------------------------------------------------------------------


def _part(part: Any) -> Any:
    """One OpenAI content part as a Gemini part (unknown parts pass unchanged: Gemini-native)."""
    if type(part) is not dict:
        return part
    kind = part.get("type")
    if kind == "text":
        return {"text": part.get("text") or ""}
    if kind == "image_url":
        url = image_url_of(part)
        if url is not None:
            return _media(url)
    elif kind == "input_audio":
        audio = part.get("input_audio")
        if type(audio) is dict:
            return {
                "inlineData": {
                    "mimeType": f"audio/{audio.get('format') or 'wav'}",
                    "data": audio.get("data") or "",
                }
            }
    elif kind == "file":
        file = part.get("file")
        if type(file) is dict and type(file.get("file_data")) is str:
            return _media(file["file_data"])
    return part


def _media(url: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is not None:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    file: dict[str, Any] = {"fileUri": url}
    mime = mimetypes.guess_type(url)[0]
    if mime:
        file["mimeType"] = mime
    return {"fileData": file}


def _parts(content: Any) -> list[Any]:
    if type(content) is list:
        return [_part(p) for p in content]
    text = text_of(content)
    return [{"text": text}] if text else []


def _append(contents: list[dict[str, Any]], role: str, parts: list[Any]) -> None:
    """Add a turn, merging it into the previous one when the role repeats (the function
    responses to parallel calls must share one turn)."""
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _response(content: Any) -> dict[str, Any]:
    """A tool result as functionResponse.response: a JSON object as is, other text as output."""
    text = text_of(content)
    if text[:1] == "{":
        try:
            value = loads(text)
        except ValueError:
            pass
        else:
            if type(value) is dict:
                return value
    return {"output": text}


def _declaration(fn: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn.get("name")}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        out["parametersJsonSchema"] = fn["parameters"]
    return out


def _tools(tools: list[Any]) -> list[Any]:
    declarations = []
    native = []
    for tool in tools:
        fn = tool.get("function") if type(tool) is dict else None
        if type(fn) is dict:
            declarations.append(_declaration(fn))
        else:  # already a Gemini tool, e.g. {"googleSearch": {}}
            native.append(tool)
    return [{"functionDeclarations": declarations}, *native] if declarations else native


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if type(choice) is str:
        mode = _MODES.get(choice)
        return {"functionCallingConfig": {"mode": mode}} if mode else None
    if type(choice) is dict:
        fn = choice.get("function")
        if type(fn) is dict:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn.get("name")]}}
    return None


def _generation_config(request: dict[str, Any], model: str) -> dict[str, Any]:
    get = request.get
    config = {out: get(key) for key, out in _SAMPLING if get(key) is not None}
    max_tokens = get("max_tokens")
    if max_tokens is None:
        max_tokens = get("max_completion_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = stop_list(get("stop"))
    if stop is not None:
        config["stopSequences"] = stop
    fmt = get("response_format")
    if type(fmt) is dict and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = fmt.get("json_schema")
        if type(schema) is dict and schema.get("schema") is not None:
            config["responseJsonSchema"] = schema["schema"]
    thinking = _thinking_config(get("reasoning_effort"), model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(effort: Any, model: str) -> dict[str, Any] | None:
    if type(effort) is not str or effort not in _BUDGET or not _THINKS.search(model):
        return None
    if _LEVELS.search(model):
        return {"thinkingLevel": _LEVEL[effort]}
    budget = _BUDGET[effort]
    if budget == 0 and "-pro" in model:  # 2.5 Pro cannot stop thinking: its least budget
        budget = 128
    return {"thinkingBudget": budget}


def _signature(call: dict[str, Any]) -> str | None:
    """A tool call's ``extra_content.google.thought_signature`` (Gemini's OpenAI spelling)."""
    extra = call.get("extra_content")
    google = extra.get("google") if type(extra) is dict else None
    signature = google.get("thought_signature") if type(google) is dict else None
    return signature if type(signature) is str and signature else None


def _calls(calls: list[dict[str, Any]], called: dict[str, str]) -> list[dict[str, Any]]:
    """functionCall parts, each with the signature it came with; with none at all (a history
    Gemini did not make), the first of the step carries the documented skip sentinel."""
    parts = []
    signed = any(_signature(c) for c in calls)
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        name = fn.get("name") or ""
        called[call.get("id") or ""] = name
        part: dict[str, Any] = {
            "functionCall": {"name": name, "args": args_object(fn.get("arguments"))},
        }
        signature = _signature(call) if signed else SKIP_SIGNATURE if i == 0 else None
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


# -- response --------------------------------------------------------------------------------------


def _finish(reason: Any, tool_calls: bool) -> str | None:
    if reason is None:
        return None
    if type(reason) is not str:
        fail(f"finishReason: expected a string, got {reason!r}")
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"  # Gemini says STOP after function calls


def _usage(raw: Any) -> Usage:
    """promptTokenCount includes the cached tokens; thoughts are billed as output, apart from
    candidatesTokenCount, so they are added to it."""
    usage = as_dict(raw, "usageMetadata")
    what = "usageMetadata"
    thoughts = tokens(usage, "thoughtsTokenCount", what)
    return Usage(
        tokens(usage, "promptTokenCount", what) + tokens(usage, "toolUsePromptTokenCount", what),
        tokens(usage, "candidatesTokenCount", what) + thoughts,
        cache_read_tokens=tokens(usage, "cachedContentTokenCount", what),
        reasoning_tokens=thoughts,
    )


Piece = str | ToolCall | ReasoningDelta


def _read(candidate: dict[str, Any], thoughts: Reasoning) -> list[Piece]:
    """The candidate's parts in order: answer text, function calls and reasoning. A ``thought``
    part is reasoning; a ``thoughtSignature`` on an answer part is a reasoning block of its own
    (a bare signature), closing the thoughts before it."""
    out: list[Piece] = []
    content = candidate.get("content")
    if content is None:
        return out
    parts = as_dict(content, "candidates[0].content").get("parts")
    for i, raw in enumerate(opt_list(parts, "candidates[0].content.parts")):
        part = as_dict(raw, f"parts[{i}]")
        signature = part.get("thoughtSignature")
        if part.get("thought"):
            text = opt_str(part.get("text"), f"parts[{i}].text")
            if text:
                out.append(thoughts.text(text))
        else:
            thoughts.close()
            if "text" in part:
                out.append(opt_str(part["text"], f"parts[{i}].text") or "")
            elif "functionCall" in part:
                out.append(_call(part["functionCall"], i))
        if signature:
            out.append(thoughts.sign(opt_str(signature, f"parts[{i}].thoughtSignature") or ""))
    return out


def _call(raw: Any, i: int) -> ToolCall:
    call = as_dict(raw, f"parts[{i}].functionCall")
    name = opt_str(call.get("name"), f"parts[{i}].functionCall.name")
    if not name:
        fail(f"parts[{i}].functionCall.name: missing")
    return ToolCall(
        opt_str(call.get("id"), f"parts[{i}].functionCall.id") or new_call_id(),
        name,
        dump_args(opt_dict(call.get("args"), f"parts[{i}].functionCall.args")),
    )


def _first_candidate(body: dict[str, Any]) -> dict[str, Any] | None:
    """The first candidate; None when the prompt was blocked (``promptFeedback.blockReason``)."""
    candidates = body.get("candidates")
    if candidates is None or candidates == []:
        if body.get("promptFeedback") is not None:
            return None
        fail("candidates: missing")
    return as_dict(as_list(candidates, "candidates")[0], "candidates[0]")


def _root(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith(("/v1beta", "/v1", "/v1alpha")) else base + "/v1beta"


class GeminiKind(Kind):
    name = "gemini"
    description = "Google Gemini (generateContent of the generativelanguage API)"
    default_base_url = "https://generativelanguage.googleapis.com"
    default_template = "gemini/chat.json.j2"
    stream_format = "sse"

    def url(self, base_url: str, model: str, stream: bool) -> str:
        path = model if model.startswith(("models/", "tunedModels/")) else "models/" + model
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return f"{_root(base_url)}/{path}{method}"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers

    def context(
        self, request: dict[str, Any], model: str, stream: bool, options: WireOptions = DEFAULT_WIRE
    ) -> dict[str, Any]:
        get = request.get
        system: list[str] = []
        if get("system"):
            system.append(text_of(get("system")))
        contents: list[dict[str, Any]] = []
        called: dict[str, str] = {}  # tool call id -> function name, for functionResponse.name
        for m in get("messages") or ():
            role = m.get("role")
            if role == "user":
                _append(contents, "user", _parts(m.get("content")))
            elif role == "assistant":
                parts = _parts(m.get("content")) + _calls(m.get("tool_calls") or [], called)
                if parts:
                    _append(contents, "model", parts)
            elif role == "tool":
                call_id = m.get("tool_call_id") or ""
                name = m.get("name") or called.get(call_id) or call_id
                _append(
                    contents,
                    "user",
                    [
                        {"functionResponse": {"name": name, "response": _response(m.get("content"))}},
                    ],
                )
            elif role in ("system", "developer"):
                text = text_of(m.get("content"))
                if text:
                    system.append(text)
        tools = get("tools") or None
        return {
            "request": request,
            "model": model,
            "stream": stream,
            "contents": contents,
            "system_instruction": {"parts": [{"text": "\n\n".join(system)}]} if system else None,
            "generation_config": _generation_config(request, model),
            "tools": _tools(tools) if tools else None,
            "tool_config": _tool_config(get("tool_choice")) if tools else None,
        }

    def notes(self, request: dict[str, Any], model: str, options: WireOptions = DEFAULT_WIRE) -> list[str]:
        get = request.get
        out = []
        effort = get("reasoning_effort")
        thinking = _thinking_config(effort, model)
        if effort is not None and thinking is None:
            why = "unknown effort" if effort not in _BUDGET else f"{model} does not think"
            out.append(f"reasoning_effort {effort!r} is not sent ({why})")
        elif thinking is not None:
            ((key, value),) = thinking.items()
            out.append(f"reasoning_effort {effort!r} is sent as thinkingConfig.{key} {value!r}")
        if get("tools") and get("parallel_tool_calls") is False:
            out.append("parallel_tool_calls false is not sent (Gemini has no such setting)")
        if get("tools") and get("tool_choice") is not None and _tool_config(get("tool_choice")) is None:
            out.append(f"tool_choice {get('tool_choice')!r} is not sent (not a choice Gemini has)")
        fmt = get("response_format")
        if type(fmt) is dict and fmt.get("type") not in (None, "text", "json_object", "json_schema"):
            out.append(f"response_format {fmt.get('type')!r} is not sent")
        return out + unsent(request, "gemini", _MAPPED) + native_notes(request, "gemini")

    def parse(self, data: Any) -> Parsed:
        body = as_dict(data, "response")
        if body.get("error"):
            fail(error_text(body))
        usage = body.get("usageMetadata")
        candidate = _first_candidate(body)
        thoughts = Reasoning("gemini")
        pieces = _read(candidate, thoughts) if candidate is not None else []
        calls = tuple(p for p in pieces if isinstance(p, ToolCall))
        return Parsed(
            text="".join(p for p in pieces if isinstance(p, str)),
            finish_reason=_finish(candidate.get("finishReason"), bool(calls))
            if candidate is not None
            else "content_filter",
            usage=_usage(usage) if usage is not None else Usage(),
            tool_calls=calls,
            model=opt_str(body.get("modelVersion"), "modelVersion"),
            reasoning=thoughts.blocks(),
        )

    def stream_parser(self) -> StreamParser:
        return GeminiStream()

    def models_url(self, base_url: str) -> str:
        return _root(base_url) + "/models?pageSize=1000"

    def parse_models(self, data: Any) -> list[str]:
        """Models that can chat (``generateContent``), without the ``models/`` prefix."""
        out = []
        for raw in opt_list(as_dict(data, "models").get("models"), "models"):
            model = as_dict(raw, "models[]")
            name = model.get("name")
            methods = model.get("supportedGenerationMethods")
            if type(name) is str and (type(methods) is not list or "generateContent" in methods):
                out.append(name.removeprefix("models/"))
        return out


class GeminiStream(SSEParser):
    """``data: {GenerateContentResponse}`` chunks; there is no end marker, so the stream is
    done when a chunk carries a finishReason (or the prompt was blocked). Thought parts and
    thought signatures become ``ReasoningDelta`` events."""

    kind = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self._calls = 0

    def event(self, data: dict[str, Any]) -> Deltas:
        if data.get("error"):
            fail(error_text(data))
        model = data.get("modelVersion")
        if type(model) is str:
            self.model = model
        usage = data.get("usageMetadata")
        if usage is not None:
            self.usage = _usage(usage)
        if not data.get("candidates") and usage is not None and "promptFeedback" not in data:
            return []  # a usage-only chunk
        candidate = _first_candidate(data)
        if candidate is None:
            self.finish_reason = "content_filter"
            self.done = True
            return []
        out: Deltas = []
        for piece in _read(candidate, self.thoughts):
            if isinstance(piece, str):
                if piece:
                    out.append(TextDelta(piece))
            elif isinstance(piece, ToolCall):
                out.append(ToolCallDelta(self._calls, piece.id, piece.name, piece.arguments))
                self._calls += 1
            else:
                out.append(piece)
        reason = candidate.get("finishReason")
        if reason is not None:
            self.finish_reason = _finish(reason, self._calls > 0)
            self.done = True
        return out


KIND = GeminiKind()
