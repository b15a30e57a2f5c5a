"""Every SDK parses every answer: each scenario (plain, stop sequence, max tokens, a long chunked
reply, a tool call, thinking, thinking then a tool call, prompt-cache reads), answered whole and
streamed, read through each official SDK and reduced to one shape — which must be the same for all
four (the fake's answer is a function of the request, so the SDKs must agree on it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import ollama
import openai
import pytest
from google import genai
from google.genai import types

Reduced = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    text: str = "hello there"
    directive: str = ""
    max_tokens: int | None = None
    stop: str | None = None
    tools: bool = False
    think: bool = False


SCENARIOS = {
    "plain": Scenario(),
    "stop-sequence": Scenario(text="one STOP two", stop="STOP"),
    "max-tokens": Scenario(text="one two three", max_tokens=2),
    "long-chunked": Scenario(directive="words=40 chunks=7"),
    "tool-call": Scenario(text="weather? use the tool", tools=True),
    "thinking": Scenario(think=True),
    "thinking-tool-call": Scenario(directive="tool", tools=True, think=True),
    "cache-read": Scenario(directive="cached=64"),
}
FILLER = " ".join(["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"] * 5)


def _expected(s: Scenario, sdk: str) -> Reduced:
    words = {"plain": 2, "stop-sequence": 3, "max-tokens": 3, "tool-call": 4}
    text, finish = "echo: " + s.text, "stop"
    if s.stop:
        text = text[: text.index(s.stop)]
    if s.max_tokens:
        text, finish = " ".join(text.split()[: s.max_tokens]), "length"
    if "words=" in s.directive:
        text = FILLER
    calls: list[Any] = []
    if s.tools and (s.directive == "tool" or "tool" in s.text.split()):
        text, finish = "", "tool"
        calls = [("get_weather", {"city": s.text, "unit": "celsius", "days": 1})]
    thought = "thinking: " + s.text if s.think else ""
    cached = 64 if "cached" in s.directive and sdk != "ollama" else 0
    said = json.dumps(calls[0][1]) if calls else text
    return {
        "text": text,
        "finish": finish,
        "calls": calls,
        "thinking": thought if sdk != "openai" and thought else None,  # openai only counts
        "cached": cached,
        "input": words.get(_name(s), 2) + cached,
        "output": len(said.split()) + len(thought.split()),
    }  # thinking is billed as output


def _name(s: Scenario) -> str:
    return next(k for k, v in SCENARIOS.items() if v == s)


# -- one reader per SDK: (clients, scenario, stream, weather) -> reduced answer -----------------
def _openai(client: openai.OpenAI, s: Scenario, stream: bool, weather: dict[str, Any]) -> Reduced:
    kw: dict[str, Any] = {
        "model": "o4-mini" if s.think else "gpt-4o-mini",
        "messages": [{"role": "user", "content": s.text}],
        "extra_headers": {"x-fake": s.directive} if s.directive else None,
    }
    if s.max_tokens:
        kw["max_completion_tokens"] = s.max_tokens
    if s.stop:
        kw["stop"] = [s.stop]
    if s.tools:
        kw["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": weather}}]
    if stream:  # (the SDK's stream() helper refuses to finish a reply cut by max tokens)
        text, reason, usage, args = "", None, None, {}
        for chunk in client.chat.completions.create(
            **kw, stream=True, stream_options={"include_usage": True}
        ):
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                reason = choice.finish_reason or reason
                for tc in choice.delta.tool_calls or ():
                    name, part = args.get(tc.index, ("", ""))
                    fn = tc.function
                    args[tc.index] = (
                        name + (fn.name or "") if fn else name,
                        part + (fn.arguments or "") if fn else part,
                    )
        calls = [(n, json.loads(a)) for n, a in args.values()]
    else:
        resp = client.chat.completions.create(**kw)
        choice, usage, reason = resp.choices[0], resp.usage, resp.choices[0].finish_reason
        text = choice.message.content or ""
        calls = [
            (c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
            for c in choice.message.tool_calls or ()
        ]
    assert usage is not None and usage.prompt_tokens_details is not None
    return {
        "text": text,
        "finish": {"tool_calls": "tool"}.get(reason or "", reason),
        "thinking": None,
        "calls": calls,
        "cached": usage.prompt_tokens_details.cached_tokens,
        "input": usage.prompt_tokens,
        "output": usage.completion_tokens,
    }


def _anthropic(client: anthropic.Anthropic, s: Scenario, stream: bool, weather: dict[str, Any]) -> Reduced:
    kw: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": s.max_tokens or 2048,
        "messages": [{"role": "user", "content": s.text}],
        "extra_headers": {"x-fake": s.directive} if s.directive else None,
    }
    if s.stop:
        kw["stop_sequences"] = [s.stop]
    if s.tools:
        kw["tools"] = [{"name": "get_weather", "input_schema": weather}]
    if s.think:
        kw["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    if stream:
        with client.messages.stream(**kw) as st:
            msg = st.get_final_message()
    else:
        msg = client.messages.create(**kw)
    finish = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool"}[
        msg.stop_reason or ""
    ]
    u = msg.usage
    return {
        "text": "".join(b.text for b in msg.content if b.type == "text"),
        "finish": finish,
        "thinking": next((b.thinking for b in msg.content if b.type == "thinking"), None),
        "calls": [(b.name, b.input) for b in msg.content if b.type == "tool_use"],
        "cached": u.cache_read_input_tokens,
        "input": u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
        "output": u.output_tokens,
    }


def _gemini(client: genai.Client, s: Scenario, stream: bool, weather: dict[str, Any]) -> Reduced:
    config = types.GenerateContentConfig(
        http_options=types.HttpOptions(headers={"x-fake": s.directive} if s.directive else {}),
        max_output_tokens=s.max_tokens,
        stop_sequences=[s.stop] if s.stop else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(name="get_weather", parameters_json_schema=weather)
                ]
            )
        ]
        if s.tools
        else None,
        thinking_config=types.ThinkingConfig(include_thoughts=True) if s.think else None,
    )
    model = "gemini-2.5-flash" if s.think else "gemini-2.0-flash"
    chunks = (
        list(client.models.generate_content_stream(model=model, contents=s.text, config=config))
        if stream
        else [client.models.generate_content(model=model, contents=s.text, config=config)]
    )
    parts = [
        p
        for c in chunks
        if c.candidates and c.candidates[0].content
        for p in c.candidates[0].content.parts or ()
    ]
    last = chunks[-1]
    assert last.candidates is not None and last.usage_metadata is not None
    reason = last.candidates[0].finish_reason
    calls = [(p.function_call.name, p.function_call.args) for p in parts if p.function_call]
    finish = (
        "tool"
        if calls
        else {types.FinishReason.STOP: "stop", types.FinishReason.MAX_TOKENS: "length"}[reason]
    )  # type: ignore
    thoughts = "".join(p.text or "" for p in parts if p.thought)
    return {
        "text": "".join(p.text or "" for p in parts if not p.thought),
        "finish": finish,
        "thinking": thoughts or None,
        "calls": calls,
        "cached": last.usage_metadata.cached_content_token_count or 0,
        "input": last.usage_metadata.prompt_token_count,
        "output": (last.usage_metadata.candidates_token_count or 0)
        + (last.usage_metadata.thoughts_token_count or 0),
    }


def _ollama(
    make: Callable[..., ollama.Client], s: Scenario, stream: bool, weather: dict[str, Any]
) -> Reduced:
    options: dict[str, Any] = {}
    if s.max_tokens:
        options["num_predict"] = s.max_tokens
    if s.stop:
        options["stop"] = [s.stop]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": weather}}]
    client = make(s.directive)
    kw: dict[str, Any] = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": s.text}],
        "options": options or None,
        "think": True if s.think else None,
        "tools": tools if s.tools else None,
    }
    chunks = list(client.chat(**kw, stream=True)) if stream else [client.chat(**kw)]
    calls = [
        (c.function.name, dict(c.function.arguments)) for ch in chunks for c in ch.message.tool_calls or ()
    ]
    last = chunks[-1]
    thinking = "".join(c.message.thinking or "" for c in chunks)
    finish = "tool" if calls else last.done_reason
    return {
        "text": "".join(c.message.content for c in chunks),
        "finish": finish,
        "thinking": thinking or None,
        "calls": calls,
        "cached": 0,
        "input": last.prompt_eval_count,
        "output": last.eval_count,
    }


READERS: dict[str, Callable[..., Reduced]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "ollama": _ollama,
}
CLIENT_FIXTURE = {"openai": "oai", "anthropic": "claude", "gemini": "gemini", "ollama": "llama"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("sdk", list(READERS))
def test_every_sdk_parses_every_answer(
    request: pytest.FixtureRequest, sdk: str, scenario: str, stream: bool, weather: dict[str, Any]
) -> None:
    request.getfixturevalue("fake")  # a clean server
    client = request.getfixturevalue(CLIENT_FIXTURE[sdk])
    s = SCENARIOS[scenario]
    assert READERS[sdk](client, s, stream, weather) == _expected(s, sdk)
