"""The kind registry: the four wire protocols by name, each with a built-in template."""

from __future__ import annotations

import pytest

from engine.providers import KINDS, Kind, WireError, get_kind
from engine.templates import BUILTIN_DIR


def test_the_four_kinds() -> None:
    assert list(KINDS) == ["openai", "anthropic", "gemini", "ollama"]
    for name, kind in KINDS.items():
        assert isinstance(kind, Kind)
        assert kind.name == name
        assert get_kind(name) is kind
        assert (BUILTIN_DIR / kind.default_template).is_file()
        assert kind.default_template == f"{name}/chat.json.j2"
    assert {k.stream_format for k in KINDS.values()} == {"sse", "ndjson"}


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        KINDS["mine"] = KINDS["openai"]  # type: ignore[index]


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="openai, anthropic, gemini, ollama"):
        get_kind("opneai")


def test_fresh_stream_parsers() -> None:
    for kind in KINDS.values():
        a, b = kind.stream_parser(), kind.stream_parser()
        assert a is not b
        assert (a.done, a.finish_reason, a.model) == (False, None, None)


SSE_KINDS = [name for name, kind in KINDS.items() if kind.stream_format == "sse"]


@pytest.mark.parametrize(
    "data",
    [
        '{"type": "error", "message": "upstream overloaded"}',
        '{"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded"}}',
        '{"error": "upstream overloaded"}',
        '"upstream overloaded"',
        "upstream overloaded",
    ],
    ids=["message", "anthropic", "error-string", "json-string", "plain-text"],
)
@pytest.mark.parametrize("name", SSE_KINDS)
def test_an_event_named_error_raises_with_its_message_whatever_its_data(name: str, data: str) -> None:
    parser = get_kind(name).stream_parser()
    with pytest.raises(WireError, match="upstream overloaded"):
        for line in ["event: error", f"data: {data}", "", "data: [DONE]", ""]:
            parser.feed(line)


@pytest.mark.parametrize("name", SSE_KINDS)
def test_a_plain_text_error_event_cut_by_the_end_of_the_body_still_raises(name: str) -> None:
    parser = get_kind(name).stream_parser()
    parser.feed("event: error")
    parser.feed("data: upstream overloaded")
    with pytest.raises(WireError, match="upstream overloaded"):
        parser.feed("")  # what the runtime feeds when the body ends


def test_the_event_name_lasts_one_event_only() -> None:
    parser = get_kind("openai").stream_parser()
    for line in ["event: error", ": keep-alive", "event: chunk", ""]:
        parser.feed(line)
    assert parser.feed('data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}') != []
    parser.feed("")
    parser.feed("event: error")
    parser.feed("")  # an error event with no data: nothing to raise on
    assert parser.feed('data: {"choices": [{"index": 0, "delta": {"content": "b"}}]}') != []
