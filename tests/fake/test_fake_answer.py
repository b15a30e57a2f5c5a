"""The deterministic answer: echo, truncation, stop sequences, tool calls, chunking."""

from __future__ import annotations

import pytest

from engine.fake.answer import Chat, answer, split, strip_markers, words
from engine.fake.faults import NO_FAULT, parse


def chat(text: str = "hello world", **kw: object) -> Chat:
    c = Chat("openai", "m", **kw)  # type: ignore[arg-type]
    c.user_text = text
    return c


def test_echo_is_a_pure_function_of_the_request() -> None:
    a, b = answer(chat(), NO_FAULT), answer(chat(), NO_FAULT)
    assert a.text == b.text == "echo: hello world"
    assert a.finish == "stop"
    assert a.output_tokens == 3


def test_max_tokens_truncates_words_and_finishes_with_length() -> None:
    a = answer(chat("one two three four", max_tokens=2), NO_FAULT)
    assert (a.text, a.finish, a.output_tokens) == ("echo: one", "length", 2)


def test_max_tokens_not_reached_is_a_normal_stop() -> None:
    assert answer(chat("hi", max_tokens=50), NO_FAULT).finish == "stop"


def test_stop_sequence_cuts_the_text() -> None:
    a = answer(chat("alpha beta gamma", stop=("gamma", "beta")), NO_FAULT)
    assert (a.text, a.finish, a.stop_sequence) == ("echo: alpha ", "stop_sequence", "beta")


def test_word_tool_calls_the_first_offered_tool() -> None:
    schema = {"type": "object", "properties": {"query": {"type": "string"}}}
    a = answer(
        chat("please use a tool now", tools=("search", "calc"), schemas={"search": schema, "calc": None}),
        NO_FAULT,
    )
    assert (a.tool_name, a.tool_args, a.finish) == ("search", {"query": "please use a tool now"}, "tool")
    assert "".join(a.pieces) == a.tool_json


def test_a_tool_without_parameters_is_called_with_none() -> None:
    a = answer(chat("use a tool", tools=("now",), schemas={"now": None}), NO_FAULT)
    assert (a.tool_name, a.tool_args) == ("now", {})


def test_no_tool_call_without_tools_or_without_the_word() -> None:
    assert answer(chat("use a tool"), NO_FAULT).tool_name is None
    assert answer(chat("toolbox", tools=("search",)), NO_FAULT).tool_name is None


def test_tool_directive_forces_a_call_and_names_a_tool() -> None:
    assert answer(chat("hi", tools=("search",)), parse("tool")).tool_name == "search"
    a = answer(chat("hi"), parse("tool=lookup"))
    assert (a.tool_name, a.tool_args) == ("lookup", {"q": "hi"})  # not declared: the fake's own


def test_a_trailing_tool_result_is_answered_in_text() -> None:
    a = answer(chat("use the tool", tools=("search",), tool_result="42"), parse("tool"))
    assert (a.tool_name, a.text) == (None, "tool result: 42")


def test_words_directive_gives_filler_of_that_length() -> None:
    a = answer(chat(), parse("words=20"))
    assert a.output_tokens == 20 and len(a.pieces) == 20


@pytest.mark.parametrize("n", [1, 3, 7, 50])
def test_split_into_exactly_n_pieces_keeps_the_text(n: int) -> None:
    pieces = split("echo: the quick brown fox", n)
    assert len(pieces) == n and "".join(pieces) == "echo: the quick brown fox"


def test_default_split_is_one_word_per_piece() -> None:
    assert split("a b  c", None) == ["a", " b", " ", " c"]


def test_markers_are_stripped_and_returned() -> None:
    assert strip_markers("hi [[fake: status=503]] there") == ("hi  there", " status=503")
    assert strip_markers("plain") == ("plain", "")


def test_token_count_is_words_at_least_one() -> None:
    assert (words(""), words("a b c")) == (1, 3)


def test_thinking_comes_first_and_is_counted_apart() -> None:
    a = answer(chat("hi there", thinking=True), NO_FAULT)
    assert (a.thinking, a.thinking_tokens, a.text, a.output_tokens) == (
        "thinking: hi there",
        3,
        "echo: hi there",
        3,
    )
    assert "".join(a.thinking_pieces) == a.thinking and a.signature
    assert answer(chat("hi there"), NO_FAULT).thinking == ""


def test_thinking_spends_max_tokens_first() -> None:
    a = answer(chat("one two three", thinking=True, max_tokens=6), NO_FAULT)
    assert (a.text, a.finish) == ("echo: one", "length")  # 4 words of thinking, 2 left
    a = answer(chat("one two three", thinking=True, max_tokens=3), NO_FAULT)
    assert (a.thinking, a.text, a.finish, a.output_tokens) == ("thinking: one two", "", "length", 0)


def test_cache_directives_add_cached_prompt_tokens() -> None:
    a = answer(chat("hi"), parse("cached=30 cache_write=4"))
    assert (a.input_tokens, a.cached_tokens, a.cache_write_tokens, a.prompt_tokens) == (1, 30, 4, 35)
