"""Request shapes the real APIs take (issue 8): each kind's built-in template, rendered from unified
requests that the APIs would refuse or ignore as they were sent before, and the notes each kind
gives ``engine plan`` for what it drops or changes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from engine.errors import RequestError
from engine.providers import get_kind
from engine.providers.base import WireOptions
from engine.providers.gemini import SKIP_SIGNATURE
from engine.request import SAMPLE_REQUEST, Request, normalize_request
from engine.templates import BUILTIN_DIR, compile_template

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {}}}},
}
TIME = {"type": "function", "function": {"name": "get_time"}}
HI = [{"role": "user", "content": "hi"}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "c", "strict": True, "schema": SCHEMA}}


def render(
    kind: str,
    request: dict[str, Any],
    model: str = "m-1",
    stream: bool = False,
    options: WireOptions | None = None,
) -> Any:
    k = get_kind(kind)
    tpl = compile_template(k.default_template, (BUILTIN_DIR / k.default_template).read_text())
    req = normalize_request({"model": model, "messages": HI, **request})
    extra = {} if options is None else {"options": options}
    return tpl.render_checked(**k.context(req, model, stream, **extra))


def notes(
    kind: str, request: dict[str, Any], model: str = "m-1", options: WireOptions | None = None
) -> list[str]:
    req = normalize_request({"model": model, "messages": HI, **request})
    extra = {} if options is None else {"options": options}
    return get_kind(kind).notes(req, model, **extra)


def call(call_id: str, name: str, args: str = "{}", **extra: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}, **extra}


def signed(signature: str) -> dict[str, Any]:
    return {"extra_content": {"google": {"thought_signature": signature}}}


# -- openai: max_tokens / max_completion_tokens -----------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["o1", "o1-mini", "o3-mini", "o3-pro", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "gpt-5-2025-08-07"],
)
def test_openai_reasoning_models_get_max_completion_tokens(model: str) -> None:
    body = render("openai", {"max_tokens": 64}, model)
    assert "max_tokens" not in body and body["max_completion_tokens"] == 64
    assert notes("openai", {"max_tokens": 64}, model) == [
        "max_tokens is sent as max_completion_tokens (a reasoning model)"
    ]


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4.1-mini", "gpt-50", "openai/o3", "omni", "llama-3.3-70b", "deepseek-reasoner"]
)
def test_openai_other_models_keep_the_field_as_written(model: str) -> None:
    assert render("openai", {"max_tokens": 64}, model)["max_tokens"] == 64
    body = render("openai", {"max_completion_tokens": 99}, model)
    assert body["max_completion_tokens"] == 99 and "max_tokens" not in body
    assert notes("openai", {"max_tokens": 64}, model) == []


def test_openai_max_completion_tokens_wins_over_max_tokens_on_a_reasoning_model() -> None:
    body = render("openai", {"max_tokens": 64, "max_completion_tokens": 99}, "o3")
    assert body["max_completion_tokens"] == 99 and "max_tokens" not in body


@pytest.mark.parametrize(
    ("field", "model", "request_", "sent"),
    [
        ("max_completion_tokens", "my-o3-deployment", {"max_tokens": 64}, {"max_completion_tokens": 64}),
        ("max_tokens", "o3-mini", {"max_tokens": 64}, {"max_tokens": 64}),
        ("max_tokens", "gpt-4o", {"max_completion_tokens": 99}, {"max_tokens": 99}),
    ],
)
def test_openai_max_tokens_field_overrides_the_name(
    field: Any, model: str, request_: dict[str, Any], sent: dict[str, int]
) -> None:
    body = render("openai", request_, model, options=WireOptions(max_tokens_field=field))
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == sent
    assert all(
        "(max_tokens_field)" in n
        for n in notes("openai", request_, model, WireOptions(max_tokens_field=field))
    )


def test_openai_o1_mini_system_messages_are_noted_not_rewritten() -> None:
    req = {"system": "Be brief."}
    assert render("openai", req, "o1-mini")["messages"][0]["role"] == "system"
    assert any("o1-mini refuses system and developer" in n for n in notes("openai", req, "o1-mini"))
    assert notes("openai", req, "o3") == []  # o1 and later take system (as developer)


# -- openai: pass-through -------------------------------------------------------------------------

PASS_THROUGH = {
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 3,
    "n": 2,
    "service_tier": "flex",
    "store": False,
    "user": "u-1",
    "prediction": {"type": "content", "content": "x"},
    "modalities": ["text"],
    "reasoning_effort": "low",
    "verbosity": "low",
}


def test_openai_passes_unknown_openai_fields_through_as_written() -> None:
    body = render(
        "openai", {**PASS_THROUGH, "stream_options": {"include_obfuscation": False}}, "gpt-4o", stream=True
    )
    assert {k: body[k] for k in PASS_THROUGH} == PASS_THROUGH
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@pytest.mark.parametrize(
    ("kind", "dropped"),
    [
        (
            "anthropic",
            "n, seed, logprobs, top_logprobs, service_tier, store, prediction, modalities, verbosity",
        ),
        ("gemini", "service_tier, store, user, prediction, modalities, verbosity"),
        ("ollama", "n, logprobs, top_logprobs, service_tier, store, user, prediction, modalities, verbosity"),
    ],
)
def test_other_kinds_note_the_openai_fields_they_do_not_send(kind: str, dropped: str) -> None:
    fields = {k: v for k, v in PASS_THROUGH.items() if k != "reasoning_effort"}
    assert f"not sent (no {kind} equivalent): {dropped}" in notes(kind, fields, "gemini-2.0-flash")
    assert notes("openai", fields) == []


def test_gemini_maps_n_and_logprobs() -> None:
    config = render("gemini", {"n": 2, "logprobs": True, "top_logprobs": 3})["generationConfig"]
    assert (config["candidateCount"], config["responseLogprobs"], config["logprobs"]) == (2, True, 3)


# -- openai: reasoning replayed or not ------------------------------------------------------------

THOUGHT_TURN = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should look it up.",
        "reasoning_signature": "sig-abc",
        "tool_calls": [call("call_1", "get_weather", '{"city": "Paris"}')],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def test_openai_drops_reasoning_fields_unless_configured() -> None:
    req = {"messages": THOUGHT_TURN, "tools": [WEATHER]}
    before = copy.deepcopy(req)
    turn = render("openai", req)["messages"][1]
    assert "reasoning_content" not in turn and "reasoning_signature" not in turn
    assert turn["tool_calls"][0]["id"] == "call_1"
    assert req == before
    assert notes("openai", req) == [
        "reasoning_content of assistant messages is not sent (send_reasoning_content: true sends it)"
    ]
    kept = render("openai", req, options=WireOptions(send_reasoning_content=True))["messages"][1]
    assert kept["reasoning_content"] == "I should look it up."
    assert "reasoning_signature" not in kept
    assert notes("openai", req, options=WireOptions(send_reasoning_content=True)) == []


# -- anthropic --------------------------------------------------------------------------------------


def test_anthropic_leaves_whitespace_only_stop_sequences_out_and_says_so() -> None:
    body = render("anthropic", {"stop": ["\n\n", " ", "END"]})
    assert body["stop_sequences"] == ["END"]
    assert notes("anthropic", {"stop": ["\n\n", " ", "END"]}) == [
        "stop sequences of whitespace only are not sent (Anthropic refuses them): '\\n\\n', ' '"
    ]
    sample = render("anthropic", {k: v for k, v in SAMPLE_REQUEST.items() if k != "model"})
    assert "stop_sequences" not in sample  # the engine's own sample request sends "\n\n"


def test_anthropic_json_schema_becomes_output_config() -> None:
    body = render("anthropic", {"response_format": JSON_SCHEMA})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert notes("anthropic", {"response_format": JSON_SCHEMA}) == []


def test_anthropic_json_object_is_noted() -> None:
    body = render("anthropic", {"response_format": {"type": "json_object"}})
    assert "output_config" not in body
    assert any(
        "json_object is not sent" in n
        for n in notes("anthropic", {"response_format": {"type": "json_object"}})
    )


@pytest.mark.parametrize(
    ("effort", "limit", "budget", "max_tokens"),
    [
        ("low", None, 1024, 2048),
        ("high", None, 4096, 5120),
        ("high", 3000, 1500, 3000),
        ("medium", 1100, 1024, 1100),
    ],
)
def test_anthropic_reasoning_effort_becomes_a_thinking_budget_under_max_tokens(
    effort: str, limit: int | None, budget: int, max_tokens: int
) -> None:
    req: dict[str, Any] = {"reasoning_effort": effort, "temperature": 0, "top_k": 5}
    if limit is not None:
        req["max_tokens"] = limit
    body = render("anthropic", req)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens > budget
    assert "temperature" not in body and "top_k" not in body  # thinking refuses them
    assert notes("anthropic", req) == [
        f"reasoning_effort {effort!r} is sent as thinking budget_tokens {budget}",
        "not sent with thinking on (Anthropic refuses them): temperature, top_k",
    ]


@pytest.mark.parametrize(
    ("req", "why"),
    [
        ({"reasoning_effort": "high", "max_tokens": 1024}, "thinking needs max_tokens above 1024"),
        ({"reasoning_effort": "turbo"}, "unknown effort"),
        (
            {"reasoning_effort": "high", "tools": [WEATHER], "tool_choice": "required"},
            "Anthropic refuses thinking with a tool_choice that forces a tool call",
        ),
    ],
)
def test_anthropic_reasoning_effort_it_cannot_send_is_noted(req: dict[str, Any], why: str) -> None:
    assert "thinking" not in render("anthropic", req)
    assert any(why in n for n in notes("anthropic", req))


def test_anthropic_native_thinking_is_sent_as_written() -> None:
    native = {"type": "enabled", "budget_tokens": 2000}
    body = render("anthropic", {"thinking": native, "max_tokens": 4000})
    assert body["thinking"] == native and body["max_tokens"] == 4000


def test_anthropic_replays_a_signed_thought_before_the_text_and_tool_calls() -> None:
    msgs = [*THOUGHT_TURN[:1], {**THOUGHT_TURN[1], "content": "Let me check."}, THOUGHT_TURN[2]]
    turn = render("anthropic", {"messages": msgs, "tools": [WEATHER]})["messages"][1]
    assert [b["type"] for b in turn["content"]] == ["thinking", "text", "tool_use"]
    assert turn["content"][0] == {
        "type": "thinking",
        "thinking": "I should look it up.",
        "signature": "sig-abc",
    }
    no_tools = render(
        "anthropic",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "Hello.",
                    "reasoning_content": "greet",
                    "reasoning_signature": "s",
                },
                *HI,
            ]
        },
    )["messages"][1]["content"]
    assert no_tools == [
        {"type": "thinking", "thinking": "greet", "signature": "s"},
        {"type": "text", "text": "Hello."},
    ]


def test_anthropic_native_thinking_blocks_pass_unchanged_before_tool_use() -> None:
    blocks = [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    msgs = [
        THOUGHT_TURN[0],
        {"role": "assistant", "content": blocks, "tool_calls": [call("call_1", "get_weather")]},
        THOUGHT_TURN[2],
    ]
    turn = render("anthropic", {"messages": msgs, "tools": [WEATHER]})["messages"][1]
    assert turn["content"][:2] == blocks and turn["content"][2]["type"] == "tool_use"


def test_anthropic_notes_an_unsigned_thought() -> None:
    msgs = [*HI, {"role": "assistant", "content": "Hello.", "reasoning_content": "greet"}, *HI]
    assert render("anthropic", {"messages": msgs})["messages"][1]["content"] == "Hello."
    assert any(
        "messages[1].reasoning_content is not sent" in n for n in notes("anthropic", {"messages": msgs})
    )


# -- gemini -----------------------------------------------------------------------------------------


def test_gemini_replays_each_calls_thought_signature() -> None:
    msgs = [
        THOUGHT_TURN[0],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("c1", "get_weather", **signed("sig-1")), call("c2", "get_time")],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
        {"role": "tool", "tool_call_id": "c2", "content": "y"},
    ]
    parts = render("gemini", {"messages": msgs, "tools": [WEATHER, TIME]}, "gemini-3-pro-preview")[
        "contents"
    ][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == ["sig-1", None]


def test_gemini_without_signatures_sends_the_skip_sentinel_on_the_first_call() -> None:
    msgs = [
        THOUGHT_TURN[0],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("c1", "get_weather"), call("c2", "get_time")],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
        {"role": "tool", "tool_call_id": "c2", "content": "y"},
    ]
    parts = render("gemini", {"messages": msgs}, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [SKIP_SIGNATURE, None]


def test_gemini_response_format_becomes_the_json_mime_type_and_schema() -> None:
    config = render("gemini", {"response_format": JSON_SCHEMA})["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    config = render("gemini", {"response_format": {"type": "json_object"}})["generationConfig"]
    assert config == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("model", "effort", "config"),
    [
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "low"}),
        ("gemini-3-flash", "high", {"thinkingLevel": "high"}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192}),
    ],
)
def test_gemini_reasoning_effort_becomes_thinking_config(
    model: str, effort: str, config: dict[str, Any]
) -> None:
    body = render("gemini", {"reasoning_effort": effort}, model)
    assert body["generationConfig"]["thinkingConfig"] == config
    assert any(
        n.startswith(f"reasoning_effort {effort!r} is sent as thinkingConfig")
        for n in notes("gemini", {"reasoning_effort": effort}, model)
    )


def test_gemini_notes_what_it_cannot_send() -> None:
    req = {"reasoning_effort": "high", "tools": [WEATHER], "parallel_tool_calls": False}
    assert "generationConfig" not in render("gemini", req, "gemini-2.0-flash")
    assert notes("gemini", req, "gemini-2.0-flash") == [
        "reasoning_effort 'high' is not sent (gemini-2.0-flash does not think)",
        "parallel_tool_calls false is not sent (Gemini has no such setting)",
    ]


# -- ollama -----------------------------------------------------------------------------------------


def test_ollama_tool_choice_none_sends_no_tools() -> None:
    assert "tools" not in render("ollama", {"tools": [WEATHER], "tool_choice": "none"})
    assert notes("ollama", {"tools": [WEATHER], "tool_choice": "none"}) == []


def test_ollama_named_tool_choice_sends_that_tool_alone_and_says_it_is_not_forced() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    body = render("ollama", {"tools": [WEATHER, TIME], "tool_choice": choice})
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert notes("ollama", {"tools": [WEATHER, TIME], "tool_choice": choice}) == [
        "tool_choice 'a named function' is not sent: Ollama has no tool_choice, the model may "
        "answer without a tool call (its tool is sent alone)"
    ]


def test_ollama_required_tool_choice_is_noted() -> None:
    body = render("ollama", {"tools": [WEATHER, TIME], "tool_choice": "required"})
    assert len(body["tools"]) == 2
    assert any(
        "tool_choice 'required' is not sent" in n
        for n in notes("ollama", {"tools": [WEATHER], "tool_choice": "required"})
    )


@pytest.mark.parametrize(
    ("model", "effort", "think"),
    [
        ("gpt-oss:20b", "medium", "medium"),
        ("gpt-oss:20b", "xhigh", "high"),
        ("qwen3:8b", "high", True),
        ("qwen3:8b", "none", False),
    ],
)
def test_ollama_reasoning_effort_becomes_think(model: str, effort: str, think: Any) -> None:
    assert render("ollama", {"reasoning_effort": effort}, model)["think"] == think
    assert render("ollama", {"reasoning_effort": effort, "think": False}, model)["think"] is False


def test_ollama_replays_reasoning_content_as_thinking() -> None:
    msgs = [*HI, {"role": "assistant", "content": "Hello.", "reasoning_content": "greet"}, *HI]
    assert render("ollama", {"messages": msgs})["messages"][1] == {
        "role": "assistant",
        "content": "Hello.",
        "thinking": "greet",
    }


# -- request validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": "64"}, "max_completion_tokens"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        (
            {"messages": [{"role": "assistant", "content": "x", "reasoning_content": 1}]},
            "messages[0].reasoning_content",
        ),
        (
            {"messages": [{"role": "assistant", "content": "x", "reasoning_signature": ["s"]}]},
            "messages[0].reasoning_signature",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [call("c", "f", extra_content="s")]}]},
            "messages[0].tool_calls[0].extra_content",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [call("c", "f", extra_content={"google": {"thought_signature": 5}})],
                    }
                ]
            },
            "messages[0].tool_calls[0].extra_content.google.thought_signature",
        ),
    ],
)
def test_new_fields_are_checked_before_sending(request_: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as err:
        normalize_request({"model": "m", **request_})
    assert err.value.field == field


def test_the_pydantic_request_carries_the_new_fields() -> None:
    req = Request.model_validate(
        {
            "model": "m",
            "max_completion_tokens": 9,
            "reasoning_effort": "low",
            "messages": [
                {"role": "assistant", "content": "x", "reasoning_content": "r", "reasoning_signature": "s"}
            ],
        }
    )
    out = normalize_request(req)
    assert (out["max_completion_tokens"], out["reasoning_effort"]) == (9, "low")
    assert out["messages"][0]["reasoning_signature"] == "s"
    assert json.dumps(out)  # plain data
