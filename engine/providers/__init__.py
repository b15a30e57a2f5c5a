"""The provider kinds (wire protocols) by name: ``KINDS["openai"]`` and ``get_kind(name)``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from engine.providers.anthropic import KIND as _ANTHROPIC
from engine.providers.base import Kind, Parsed, StreamParser, WireError
from engine.providers.gemini import KIND as _GEMINI
from engine.providers.ollama import KIND as _OLLAMA
from engine.providers.openai import KIND as _OPENAI

__all__ = ["KINDS", "Kind", "Parsed", "StreamParser", "WireError", "get_kind"]

KINDS: Mapping[str, Kind] = MappingProxyType({k.name: k for k in (_OPENAI, _ANTHROPIC, _GEMINI, _OLLAMA)})


def get_kind(name: str) -> Kind:
    """The kind registered as ``name``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown provider kind {name!r} (known: {', '.join(KINDS)})") from None
