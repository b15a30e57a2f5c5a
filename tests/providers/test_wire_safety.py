"""A hostile upstream body (JSON nested past the recursion limit) is a protocol error, never an
untyped RecursionError."""

import pytest

from engine.providers import get_kind
from engine.providers.base import WireError, loads

DEEP = "[" * 200_000 + "]" * 200_000


def test_loads_turns_deep_nesting_into_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(DEEP)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "ollama"])
def test_stream_parsers_survive_deep_nesting(kind: str) -> None:
    parser = get_kind(kind).stream_parser()
    line = DEEP if kind == "ollama" else f"data: {DEEP}"
    try:
        parser.feed(line)
        parser.feed("")
    except WireError:
        pass
    assert not parser.done
