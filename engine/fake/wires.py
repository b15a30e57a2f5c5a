"""The fake's wire formats by name: ``WIRES["openai"]``, ``KINDS`` (their names, in the engine's
order) and ``route``, which finds the format and operation a request is for. A new format is one
``wire_<kind>.py`` module and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from engine.fake.wire import Wire
from engine.fake.wire_anthropic import Anthropic
from engine.fake.wire_gemini import Gemini
from engine.fake.wire_ollama import Ollama
from engine.fake.wire_openai import OpenAI

__all__ = ["DEFAULT_MODELS", "KINDS", "WIRES", "route"]

WIRES: Mapping[str, Wire] = MappingProxyType({w.name: w for w in (OpenAI(), Anthropic(), Gemini(), Ollama())})
KINDS = tuple(WIRES)
DEFAULT_MODELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {w.name: w.default_models for w in WIRES.values()}
)
# the order requests are matched in: a GET /models is told apart by its path and headers (gemini
# before anthropic), and openai's takes the rest
_ROUTING = tuple(WIRES[k] for k in ("gemini", "anthropic", "ollama", "openai"))


def route(method: str, path: str, headers: Any) -> tuple[Wire, str, str | None] | None:
    """(wire, op, model named in the path) where op is "chat", "stream" or "models"."""
    for wire in _ROUTING:
        found = wire.route(method, path, headers)
        if found is not None:
            return wire, *found
    return None
