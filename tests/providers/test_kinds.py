"""The kind registry: the four wire protocols by name, each with a built-in template."""

from __future__ import annotations

import pytest

from engine.providers import KINDS, Kind, get_kind
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
