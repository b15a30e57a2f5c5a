"""Request shapes the real APIs take (issue 8), over loopback HTTP against the strict fake, which
refuses what the real APIs refuse: max_tokens on OpenAI reasoning models (and the per-model
override reaching the runtime), whitespace-only stop sequences and unsigned thinking on Anthropic,
Gemini 3's thought signatures; and `engine plan` showing what each kind drops or changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Engine
from engine.compiler import compile_text
from engine.errors import ConfigError, ProviderError
from engine.fake import FakeServer
from engine.fake.answer import sign
from engine.plan import build_plan
from engine.request import SAMPLE_REQUEST

Make = Callable[..., Engine]

ROUTES = """\
version: 1
defaults: {speed: test, breaker: none, deadline: 5s}
speeds:
  test: {connect: 500ms, read: 2s, pool: 1s, retries: 0, backoff: {base: 10ms}}
providers:
  oai: {kind: openai, base_url: "{fake}/oai/v1", api_key: key-oai-1,
        models: {o3-mini: {}, gpt-4o: {}, forced: {}}}
  over: {kind: openai, base_url: "{fake}/over/v1", api_key: key-over-1,
         max_tokens_field: max_tokens, models: {o3-mini: {}}}
  anth: {kind: anthropic, base_url: "{fake}/anth/v1", api_key: key-anth-1,
         models: {claude-sonnet-4-5: {}}}
  gem: {kind: gemini, base_url: "{fake}/gem", api_key: key-gem-1,
        models: {gemini-3-pro-preview: {}}}
  oll: {kind: ollama, base_url: "{fake}/oll", models: {llama3.2: {}}}
routes:
  - {match: {model: reasoner}, to: oai/o3-mini}
  - {match: {model: overridden}, to: over/o3-mini}
  - {match: {model: claude}, to: anth/claude-sonnet-4-5}
  - {match: {model: gemini}, to: gem/gemini-3-pro-preview}
  - {match: {model: local}, to: oll/llama3.2}
"""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
THOUGHT = "The user wants the weather; I should call get_weather."


def _ask(model: str, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _sent(fake: FakeServer) -> dict[str, Any]:
    """The body of the last chat request the fake received."""
    body: dict[str, Any] = fake.requests[-1]["body"]
    return body


async def test_openai_reasoning_model_takes_the_requests_max_tokens(make: Make, fake: FakeServer) -> None:
    resp = await make(ROUTES).route(_ask("reasoner", max_tokens=64))
    assert resp.text.startswith("echo:")
    assert _sent(fake)["max_completion_tokens"] == 64 and "max_tokens" not in _sent(fake)


async def test_max_tokens_field_in_routes_yaml_reaches_the_wire(make: Make, fake: FakeServer) -> None:
    # the provider says max_tokens: o3-mini gets it, and the (strict) fake refuses it as OpenAI does
    with pytest.raises(ProviderError) as err:
        await make(ROUTES).route(_ask("overridden", max_tokens=64))
    assert err.value.status == 400 and "max_completion_tokens" in err.value.body
    assert _sent(fake)["max_tokens"] == 64


async def test_anthropic_answers_the_engines_own_sample_request(make: Make, fake: FakeServer) -> None:
    resp = await make(ROUTES).route({**SAMPLE_REQUEST, "model": "claude"})
    assert resp.finish_reason in ("stop", "tool_calls")
    assert "stop_sequences" not in _sent(fake)  # "\n\n" is whitespace only


async def test_anthropic_json_schema_goes_as_output_config(make: Make, fake: FakeServer) -> None:
    schema = {
        "type": "object",
        "properties": {"c": {"type": "string"}},
        "required": ["c"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    await make(ROUTES).route(_ask("claude", response_format=fmt))
    assert _sent(fake)["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def _tool_turn(**thought: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            **thought,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21 degrees"},
    ]


async def test_anthropic_thinking_with_tools_gets_its_signed_thought_back(
    make: Make, fake: FakeServer
) -> None:
    eng = make(ROUTES)
    msgs = _tool_turn(reasoning_content=THOUGHT, reasoning_signature=sign(THOUGHT))
    resp = await eng.route(
        {"model": "claude", "messages": msgs, "tools": [WEATHER], "reasoning_effort": "low", "temperature": 0}
    )
    assert resp.text
    body = _sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": THOUGHT,
        "signature": sign(THOUGHT),
    }
    # without the thought, the API (and the strict fake) refuse the turn
    with pytest.raises(ProviderError) as err:
        await eng.route(
            {"model": "claude", "messages": _tool_turn(), "tools": [WEATHER], "reasoning_effort": "low"}
        )
    assert err.value.status == 400 and "must start with a thinking block" in err.value.body


async def test_gemini_3_gets_each_calls_thought_signature_back(make: Make, fake: FakeServer) -> None:
    msgs = _tool_turn()
    msgs[1]["tool_calls"][0]["extra_content"] = {"google": {"thought_signature": "c2lnLTE="}}
    resp = await make(ROUTES).route({"model": "gemini", "messages": msgs, "tools": [WEATHER]})
    assert resp.text
    part = _sent(fake)["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "c2lnLTE=" and "functionCall" in part


async def test_ollama_named_tool_choice_sends_only_that_tool(make: Make, fake: FakeServer) -> None:
    other = {"type": "function", "function": {"name": "get_time"}}
    choice = {"type": "function", "function": {"name": "get_weather"}}
    await make(ROUTES).route(_ask("local", tools=[other, WEATHER], tool_choice=choice))
    assert [t["function"]["name"] for t in _sent(fake)["tools"]] == ["get_weather"]
    await make(ROUTES).route(_ask("local", tools=[other, WEATHER], tool_choice="none"))
    assert "tools" not in _sent(fake)


# -- engine plan --------------------------------------------------------------------------------


def _graph() -> Any:
    return compile_text(ROUTES.replace("{fake}", "http://127.0.0.1:9"))


@pytest.mark.parametrize(
    ("model", "request_", "note"),
    [
        (
            "claude",
            {"stop": ["\n\n", "END"]},
            "stop sequences of whitespace only are not sent (Anthropic refuses them): '\\n\\n'",
        ),
        ("claude", {"response_format": {"type": "json_object"}}, "json_object is not sent"),
        (
            "local",
            {"tools": [WEATHER], "tool_choice": "required"},
            "tool_choice 'required' is not sent: Ollama has no tool_choice",
        ),
        ("reasoner", {"max_tokens": 64}, "max_tokens is sent as max_completion_tokens (a reasoning model)"),
        ("gemini", {"seed": 1, "user": "u"}, "not sent (no gemini equivalent): user"),
    ],
)
def test_plan_notes_what_a_kind_drops_or_changes(model: str, request_: dict[str, Any], note: str) -> None:
    plan = build_plan(_graph(), _ask(model, **request_))
    (target,) = plan.to_dict()["targets"]
    assert any(note in n for n in target["notes"]), target["notes"]
    assert any(line.startswith("      note ") and note in line for line in plan.text().splitlines())
    assert json.loads(json.dumps(plan.to_dict()))["targets"][0]["notes"] == target["notes"]


def test_plan_has_no_notes_for_a_request_sent_as_written() -> None:
    (target,) = build_plan(_graph(), _ask("reasoner", max_completion_tokens=64)).to_dict()["targets"]
    assert target["notes"] == []


def test_plan_body_uses_the_providers_wire_options() -> None:
    body = build_plan(_graph(), _ask("overridden", max_tokens=64)).to_dict()["body"]["json"]
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body


# -- the option in routes.yaml ---------------------------------------------------------------------


def test_a_models_wire_options_override_the_providers() -> None:
    graph = compile_text(
        ROUTES.replace("{fake}", "http://127.0.0.1:9").replace(
            "models: {o3-mini: {}, gpt-4o: {}, forced: {}}",
            "send_reasoning_content: true, models: {o3-mini: {}, gpt-4o: {}, "
            "forced: {max_tokens_field: max_completion_tokens}}",
        )
    )
    oai = graph.providers["oai"]
    assert oai.wire_for("forced").max_tokens_field == "max_completion_tokens"
    assert oai.wire_for("forced").send_reasoning_content is True  # the provider's, kept
    assert oai.wire_for("gpt-4o").max_tokens_field is None
    assert oai.custom_wire and not graph.providers["anth"].custom_wire


@pytest.mark.parametrize("where", ["provider", "model"])
def test_max_tokens_field_on_another_kind_is_an_error(where: str) -> None:
    text = ROUTES.replace("{fake}", "http://127.0.0.1:9")
    text = text.replace(
        "models: {claude-sonnet-4-5: {}}",
        "max_tokens_field: max_tokens, models: {claude-sonnet-4-5: {}}"
        if where == "provider"
        else "models: {claude-sonnet-4-5: {max_tokens_field: max_tokens}}",
    )
    with pytest.raises(ConfigError) as err:
        compile_text(text)
    assert "max_tokens_field applies to kind openai only, not anthropic" in str(err.value)


async def test_a_thinking_tool_turn_continues_with_response_message(make: Make, fake: FakeServer) -> None:
    # the answer's own message() is what the next turn sends: the strict fake checks the signature
    eng = make(ROUTES)
    first = [{"role": "user", "content": "Weather in Paris? tool"}]
    ask = {"model": "claude", "tools": [WEATHER], "reasoning_effort": "low"}
    resp = await eng.route({**ask, "messages": first})
    assert resp.finish_reason == "tool_calls" and resp.reasoning
    (call,) = resp.tool_calls
    turn = [*first, resp.message(), {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}]
    again = await eng.route({**ask, "messages": turn})
    assert again.text
    sent = _sent(fake)["messages"][1]["content"]
    assert sent[0]["type"] == "thinking" and sent[0]["signature"] == sign(resp.reasoning)
    assert sent[-1]["type"] == "tool_use" and sent[-1]["id"] == call.id
