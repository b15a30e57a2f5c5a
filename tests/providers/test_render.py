"""Every kind's built-in template, rendered from a set of unified requests: snapshotted bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from engine.providers import KINDS, get_kind
from engine.request import SAMPLE_REQUEST
from engine.templates import BUILTIN_DIR, RequestTemplate, compile_template

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}  # no description, no parameters


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {"messages": [user("Hello")]},
    "system_field": {"system": "Be brief.", "messages": [user("Hello")]},
    "system_message": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hello"),
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        ]
    },
    "system_both": {
        "system": "You are a pirate.",
        "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hello"),
        ],
    },
    "multi_turn": {
        "messages": [
            user("Hi"),
            {"role": "assistant", "content": "Hello! How can I help?"},
            user("A joke."),
        ]
    },
    "sampling": {
        "messages": [user("Hi")],
        "temperature": 1.5,
        "top_p": 0.9,
        "max_tokens": 200,
        "stop": "END",
    },
    "stop_list": {"messages": [user("Hi")], "stop": ["\n\n", "END"]},
    "tools_auto": {"messages": [user("Weather in Paris?")], "tools": [WEATHER, TIME], "tool_choice": "auto"},
    "tools_required": {"messages": [user("Weather?")], "tools": [WEATHER], "tool_choice": "required"},
    "tools_named": {
        "messages": [user("Weather?")],
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    },
    "tools_none": {"messages": [user("Weather?")], "tools": [WEATHER], "tool_choice": "none"},
    "tool_choice_without_tools": {
        "messages": [user("Hi")],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    },
    "tool_round_trip": {
        "tools": [WEATHER],
        "messages": [
            user("Weather in Paris and Oslo?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "cloudy, 12 degrees"},
            user("Which is warmer?"),
        ],
    },
    "tool_call_with_text_and_bad_args": {
        "tools": [TIME],
        "messages": [
            user("Time?"),
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "not json"},
                    },
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_9",
                "name": "get_time",
                "content": [{"type": "text", "text": "12:00"}],
            },
        ],
    },
    "json_object": {
        "messages": [user("List 3 colours as JSON.")],
        "response_format": {"type": "json_object"},
    },
    "json_schema": {
        "messages": [user("A colour.")],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "colour",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
    },
    "escaping": {
        "system": "Quote \"this\" \\ and 'that'",
        "messages": [
            user("Ünïcödé ✓ 日本語 😀\nline two\ttab \u2028 </script> {{ model }} {% raw %}"),
        ],
        "stop": ['"}', "\\"],
    },
    "content_parts": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images?"},
                    {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    },
    "extras": {
        "messages": [user("Hi")],
        "seed": 7,
        "top_k": 40,
        "user": "u-123",
        "parallel_tool_calls": False,
        "tools": [WEATHER],
        "metadata": {"tier": "free", "secret": "do-not-send"},
    },
    "max_completion_tokens": {"messages": [user("Hi")], "max_completion_tokens": 99},
    "empty": {"messages": []},
}

CASES = [(kind, case, False) for kind in KINDS for case in REQUESTS]
CASES += [(kind, case, True) for kind in KINDS for case in ("plain", "tools_auto", "sample")]


def _template(kind: str) -> RequestTemplate:
    k = get_kind(kind)
    return compile_template(k.default_template, (BUILTIN_DIR / k.default_template).read_text())


TEMPLATES = {kind: _template(kind) for kind in KINDS}


def render(kind: str, request: dict[str, Any], stream: bool = False, model: str = "m-1") -> Any:
    req = {"model": model, "metadata": {}, **request}
    return TEMPLATES[kind].render_checked(**get_kind(kind).context(req, model, stream))


def _nulls(value: Any, path: str = "$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


class JSONLines(SingleFileSnapshotExtension):
    """A text snapshot in its own ``.jsonl`` file: one kind's rendered bodies, one per line."""

    file_extension = "jsonl"
    _write_mode = WriteMode.TEXT


def line(value: Any) -> str:
    """One JSON line as the provider receives it (template key order, non-ASCII kept)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@pytest.mark.parametrize("kind", KINDS)
def test_rendered_bodies(kind: str, snapshot: Any) -> None:
    """Every request of ``REQUESTS`` (and the streaming ones) rendered by ``kind``'s built-in
    template: __snapshots__/test_render/test_rendered_bodies[KIND].jsonl, one case per line."""
    model = "gemini-2.0-flash" if kind == "gemini" else "m-1"
    k = get_kind(kind)
    lines = []
    for case_kind, case, stream in CASES:
        if case_kind != kind:
            continue
        request = SAMPLE_REQUEST if case == "sample" else REQUESTS[case]
        lines.append(
            line(
                {
                    "case": case,
                    "stream": stream,
                    "url": k.url("https://example.test/", model, stream),
                    "body": render(kind, request, stream, model),
                }
            )
        )
    assert "\n".join(lines) + "\n" == snapshot(extension_class=JSONLines)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", [*REQUESTS, "sample"])
def test_no_nulls_and_no_metadata(kind: str, case: str) -> None:
    request = SAMPLE_REQUEST if case == "sample" else REQUESTS[case]
    for stream in (False, True):
        body = render(kind, request, stream)
        sent = body.pop("metadata", None)  # anthropic: OpenAI's user as metadata.user_id
        text = json.dumps(body)
        assert "do-not-send" not in text and "metadata" not in text
        assert sent is None or (kind == "anthropic" and sent == {"user_id": request["user"]})
        if kind != "openai":  # openai passes messages through as given (content: null is valid)
            assert _nulls(body) == []


@pytest.mark.parametrize("kind", KINDS)
def test_context_always_has_request_model_stream(kind: str) -> None:
    req = {"model": "x", "messages": [user("hi")], "metadata": {}}
    ctx = get_kind(kind).context(req, "y", True)
    assert ctx["request"] is req and ctx["model"] == "y" and ctx["stream"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_context_does_not_mutate_the_request(kind: str) -> None:
    req = json.loads(json.dumps({"model": "m-1", "metadata": {}, **REQUESTS["tool_round_trip"]}))
    before = json.dumps(req, sort_keys=True)
    get_kind(kind).context(req, "m-1", True)
    get_kind(kind).context(req, "m-1", False)
    assert json.dumps(req, sort_keys=True) == before


def test_stream_is_explicit_for_ollama() -> None:
    assert render("ollama", REQUESTS["plain"], False)["stream"] is False
    assert render("ollama", REQUESTS["plain"], True)["stream"] is True


def test_anthropic_max_tokens_defaults_to_1024() -> None:
    assert render("anthropic", REQUESTS["plain"])["max_tokens"] == 1024
    assert render("anthropic", REQUESTS["sampling"])["max_tokens"] == 200


def test_openai_streams_usage() -> None:
    body = render("openai", {**REQUESTS["plain"], "stream_options": {"x": 1}}, True)
    assert body["stream"] is True
    assert body["stream_options"] == {"x": 1, "include_usage": True}
    assert "stream" not in render("openai", REQUESTS["plain"], False)


@pytest.mark.parametrize("kind", KINDS)
def test_user_template_reaches_any_request_field(kind: str) -> None:
    tpl = compile_template("custom", '{"seed": {{ request.seed }}, "m": {{ model }}}')
    req = {"model": "m", "messages": [], "metadata": {}, "seed": 5}
    assert tpl.render_checked(**get_kind(kind).context(req, "m", False)) == {"seed": 5, "m": "m"}


_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)

# where each kind puts the system prompt, the last user text and the stop sequences
_WHERE = {
    "openai": lambda b: (b["messages"][0]["content"], b["messages"][-1]["content"], b["stop"]),
    "anthropic": lambda b: (b["system"], b["messages"][-1]["content"], b.get("stop_sequences")),
    "gemini": lambda b: (
        b["systemInstruction"]["parts"][0]["text"],
        b["contents"][-1]["parts"][0]["text"],
        b["generationConfig"]["stopSequences"],
    ),
    "ollama": lambda b: (b["messages"][0]["content"], b["messages"][-1]["content"], b["options"]["stop"]),
}


@settings(max_examples=80, deadline=None)
@given(system=_text, content=_text, stop=_text)
def test_any_text_arrives_verbatim(system: str, content: str, stop: str) -> None:
    for kind in KINDS:
        body = render(kind, {"system": system, "messages": [user(content)], "stop": [stop]})
        # Anthropic refuses whitespace-only stop sequences: they are left out (and noted)
        stops = None if kind == "anthropic" and not stop.strip() else [stop]
        assert _WHERE[kind](body) == (system, content, stops)
