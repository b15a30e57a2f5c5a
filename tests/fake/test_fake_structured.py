"""What the real APIs always do and the fake does too: structured output answered as JSON that
fits the schema (OpenAI ``response_format``, Anthropic ``output_config.format`` and the beta's
``output_format``), and a ``tool_choice`` that forces a call answered with a call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SCHEMA, chat_body

from engine.fake.answer import Chat, answer
from engine.fake.faults import NO_FAULT

CITY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "size": {"type": "integer", "minimum": 3}},
    "required": ["name", "size"],
}


def _text(kind: str, data: dict[str, Any]) -> str:
    if kind == "openai":
        return str(data["choices"][0]["message"]["content"])
    return str(data["content"][0]["text"])


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        (
            "openai",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": CITY}}},
        ),
        ("anthropic", {"output_config": {"format": {"type": "json_schema", "schema": CITY}}}),
        ("anthropic", {"output_format": {"type": "json_schema", "schema": CITY}}),
    ],
)
async def test_structured_output_is_json_of_the_schema(call: Any, kind: str, extra: dict[str, Any]) -> None:
    r = await call(kind, body={**chat_body(kind, "a city"), **extra})
    assert r.status_code == 200, r.text
    assert json.loads(_text(kind, r.json())) == {"name": "a city", "size": 3}


async def test_json_object_is_an_object(call: Any) -> None:
    r = await call("openai", body={**chat_body("openai", "hi"), "response_format": {"type": "json_object"}})
    assert json.loads(_text("openai", r.json())) == {"echo": "hi"}


@pytest.mark.parametrize(
    ("kind", "choice", "name"),
    [
        ("openai", "required", "first"),
        ("openai", {"type": "function", "function": {"name": "second"}}, "second"),
        ("anthropic", {"type": "any"}, "first"),
        ("anthropic", {"type": "tool", "name": "second"}, "second"),
    ],
)
async def test_a_forced_tool_choice_calls_a_tool(call: Any, kind: str, choice: Any, name: str) -> None:
    body = {**chat_body(kind, "no magic word here", tools=["first", "second"]), "tool_choice": choice}
    data = (await call(kind, body=body)).json()
    if kind == "openai":
        assert data["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == name
    else:
        assert [b["name"] for b in data["content"] if b["type"] == "tool_use"] == [name]


async def test_gemini_mode_any_calls_a_tool(call: Any) -> None:
    body = chat_body("gemini", "no magic word here", tools=["lookup"])
    body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY"}}
    part = (await call("gemini", body=body)).json()["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["name"] == "lookup"


def test_after_a_tool_result_even_a_forced_choice_answers_in_text() -> None:
    c = Chat("openai", "m", tools=("lookup",), schemas={"lookup": SCHEMA}, forced="", tool_result="42")
    assert answer(c, NO_FAULT).text == "tool result: 42"
