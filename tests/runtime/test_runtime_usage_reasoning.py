"""Usage details, cache prices and reasoning through the engine, over loopback HTTP against the fake:
cached and reasoning tokens in ``Usage`` for every kind, ``cost`` with ``cache_read`` /
``cache_write`` prices, and the model's reasoning kept apart from the answer in ``route()`` and
``stream()`` (``ReasoningDelta`` events, ``Done.reasoning``), through the response cache too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import StreamInterrupted
from engine.fake import FakeServer
from engine.fake.answer import sign
from engine.result import Done, ReasoningBlock, ReasoningDelta, StreamEvent, TextDelta, Usage

Ask = Callable[..., dict[str, Any]]
Make = Callable[..., Engine]

# The shipped templates do not ask for thoughts; these do (a provider's own template, as a user
# would write it).
ANTHROPIC_THINKING = (
    '{"model": {{ model }}, "max_tokens": 2048, '
    '"thinking": {"type": "enabled", "budget_tokens": 1024},'
    '{% if stream %} "stream": true,{% endif %} "messages": {{ messages }}}'
)
GEMINI_THOUGHTS = (
    '{"generationConfig": {{ dict(generation_config, thinkingConfig={"includeThoughts": true}) }},'
    ' "contents": {{ contents }}}'
)

PRICED = {  # kind's route -> (provider's price YAML, input, output, cache_read, cache_write)
    "g": ("{input: 1.0, output: 2.0, cache_read: 0.1}", 1.0, 2.0, 0.1, 1.0),
    "anth": ("{input: 0.8, output: 4.0, cache_read: 0.08, cache_write: 1.0}", 0.8, 4.0, 0.08, 1.0),
}


def _thinking(base: str, tmp_path: Path) -> str:
    (tmp_path / "anth.j2").write_text(ANTHROPIC_THINKING)
    (tmp_path / "gem.j2").write_text(GEMINI_THOUGHTS)
    return base.replace("key-anth-1,", f"key-anth-1, template: {tmp_path / 'anth.j2'},").replace(
        "key-gem-1,", f"key-gem-1, template: {tmp_path / 'gem.j2'},"
    )


def _priced(base: str) -> str:
    return base.replace("m: {price: {input: 1.0, output: 2.0}}", f"m: {{price: {PRICED['g'][0]}}}").replace(
        "{price: {input: 0.8, output: 4.0}}", f"{{price: {PRICED['anth'][0]}}}"
    )


def _cost(model: str, usage: Usage) -> float:
    _, inp, out, read, write = PRICED[model]
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    return (
        uncached * inp
        + usage.cache_read_tokens * read
        + usage.cache_write_tokens * write
        + usage.output_tokens * out
    ) / 1_000_000


async def _events(eng: Engine, request: dict[str, Any]) -> list[StreamEvent]:
    async with eng.stream(request) as stream:
        return [event async for event in stream]


# -- usage details -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["g", "anth", "gem"])
async def test_cached_prompt_tokens_are_reported_and_counted_in_the_prompt(
    model: str, make: Make, ask: Ask, fake: FakeServer
) -> None:
    eng = make()
    plain = (await eng.route(ask(model, "hello there [[fake: cached=0]]"))).usage  # same words
    resp = await eng.route(ask(model, "hello there [[fake: cached=40]]"))
    assert resp.usage.cache_read_tokens == 40
    assert resp.usage.input_tokens == plain.input_tokens + 40  # the whole prompt
    done = (await _events(eng, ask(model, "hello there [[fake: cached=40]]")))[-1]
    assert isinstance(done, Done) and done.usage.cache_read_tokens == 40


async def test_anthropic_cache_writes_are_reported(make: Make, ask: Ask, fake: FakeServer) -> None:
    resp = await make().route(ask("anth", "hello there [[fake: cached=40, cache_write=7]]"))
    assert (resp.usage.cache_read_tokens, resp.usage.cache_write_tokens) == (40, 7)


async def test_reasoning_tokens_are_part_of_the_output(make: Make, ask: Ask, fake: FakeServer) -> None:
    eng = make()  # an OpenAI reasoning model counts its reasoning in completion_tokens
    resp = await eng.route(ask("o3-mini", "hello there"))
    assert resp.text == "echo: hello there" and resp.reasoning is None
    assert resp.usage.reasoning_tokens > 0
    assert resp.usage.output_tokens == resp.usage.reasoning_tokens + 3


async def test_gemini_thoughts_are_billed_as_output(
    make: Make, base: str, ask: Ask, fake: FakeServer, tmp_path: Path
) -> None:
    resp = await make(_thinking(base, tmp_path)).route(ask("gem", "hello there"))
    # Gemini reports them apart from candidatesTokenCount: the engine adds them
    assert resp.usage.reasoning_tokens == 3  # "thinking: hello there"
    assert resp.usage.output_tokens == 3 + 3


# -- cost --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["g", "anth"])
async def test_cost_prices_cached_tokens_at_the_cache_prices(
    model: str, make: Make, base: str, ask: Ask, fake: FakeServer
) -> None:
    eng = make(_priced(base))
    text = "hello there [[fake: cached=400000, cache_write=100000]]"
    resp = await eng.route(ask(model, text))
    assert resp.usage.cache_read_tokens == 400_000
    assert resp.cost == pytest.approx(_cost(model, resp.usage), rel=1e-12)
    done = (await _events(eng, ask(model, text)))[-1]
    assert isinstance(done, Done) and done.cost == pytest.approx(_cost(model, done.usage), rel=1e-12)
    # priced as plain input it would be several times dearer
    assert resp.cost < (resp.usage.input_tokens * PRICED[model][1]) / 1_000_000 / 2


async def test_without_cache_prices_cached_tokens_cost_input(make: Make, ask: Ask, fake: FakeServer) -> None:
    resp = await make().route(ask("g", "hello there [[fake: cached=1000]]"))  # input 1, output 2
    assert resp.usage.cache_read_tokens == 1000
    assert resp.cost == pytest.approx(
        (resp.usage.input_tokens * 1.0 + resp.usage.output_tokens * 2.0) / 1_000_000
    )


# -- reasoning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "extra"), [("anth", {}), ("gem", {}), ("oll", {"think": True})])
async def test_route_keeps_the_reasoning_apart_from_the_answer(
    model: str, extra: dict[str, Any], make: Make, base: str, ask: Ask, fake: FakeServer, tmp_path: Path
) -> None:
    resp = await make(_thinking(base, tmp_path)).route(ask(model, "hello there", **extra))
    assert resp.text == "echo: hello there"
    assert resp.reasoning == "thinking: hello there"
    (block,) = resp.reasoning_blocks
    assert block.text == "thinking: hello there"
    # Anthropic signs its thinking (the fake as the API does); the others here do not
    assert block.signature == (sign("thinking: hello there") if model == "anth" else None)
    message = resp.message()
    assert message["content"] == "echo: hello there"
    assert message["reasoning_content"] == "thinking: hello there"
    assert message.get("reasoning_signature") == block.signature


@pytest.mark.parametrize(("model", "extra"), [("anth", {}), ("gem", {}), ("oll", {"think": True})])
async def test_stream_yields_reasoning_deltas_never_text(
    model: str, extra: dict[str, Any], make: Make, base: str, ask: Ask, fake: FakeServer, tmp_path: Path
) -> None:
    events = await _events(make(_thinking(base, tmp_path)), ask(model, "hello there", **extra))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    thoughts = [e for e in events if isinstance(e, ReasoningDelta)]
    assert text == "echo: hello there"
    assert "".join(e.text for e in thoughts) == "thinking: hello there"
    done = events[-1]
    assert isinstance(done, Done)
    assert done.reasoning == "thinking: hello there"
    assert [b.text for b in done.reasoning_blocks] == ["thinking: hello there"]
    if model == "anth":  # the signature arrives as a delta of its own, and is on the block
        assert [e.signature for e in thoughts if e.signature] == [sign("thinking: hello there")]
        assert done.reasoning_blocks[0].signature == sign("thinking: hello there")


async def test_stream_without_reasoning_has_none(make: Make, ask: Ask, fake: FakeServer) -> None:
    events = await _events(make(), ask("g", "hello there"))
    assert not any(isinstance(e, ReasoningDelta) for e in events)
    done = events[-1]
    assert isinstance(done, Done) and (done.reasoning, done.reasoning_blocks) == (None, ())


async def test_an_interrupted_stream_received_only_text(
    make: Make, base: str, ask: Ask, fake: FakeServer, tmp_path: Path
) -> None:
    eng = make(_thinking(base, tmp_path))
    seen: list[StreamEvent] = []
    with pytest.raises(StreamInterrupted) as info:
        async with eng.stream(ask("anth", "a b c d e f [[fake: stream_error, chunks=6]]")) as s:
            async for event in s:
                seen.append(event)
    assert any(isinstance(e, ReasoningDelta) and e.text for e in seen)  # thinking came first
    texts = "".join(e.text for e in seen if isinstance(e, TextDelta))
    assert "thinking" not in info.value.received
    assert info.value.received == texts


async def test_the_response_cache_keeps_usage_details_and_reasoning(
    make: Make, base: str, ask: Ask, fake: FakeServer, tmp_path: Path
) -> None:
    text = _thinking(base, tmp_path).replace(
        "version: 1\n", "version: 1\ncache: {responses: {ttl: 10m, max_temperature: 1}}\n"
    )
    eng = make(text)
    request = ask("anth", "hello there [[fake: cached=40]]", temperature=1)
    first = await eng.route(request)
    again = await eng.route(request)
    assert again.cached and not first.cached
    assert again.usage == first.usage and again.usage.cache_read_tokens == 40
    assert again.reasoning == "thinking: hello there"
    assert (
        again.reasoning_blocks
        == first.reasoning_blocks
        == (ReasoningBlock("anthropic", "thinking: hello there", sign("thinking: hello there")),)
    )
