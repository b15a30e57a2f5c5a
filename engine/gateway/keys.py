"""Who is calling: the client key of a request (``Authorization: Bearer`` or ``x-api-key``)
looked up in ``server.keys`` in constant time, and what that key may request."""

from __future__ import annotations

import fnmatch
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine.graph import ClientKey, ServerConfig
from engine.values import Secret

__all__ = ["Keyring", "token_of"]


def token_of(headers: Mapping[str, str]) -> str | None:
    """The key the client sent: ``Authorization: Bearer KEY``, else ``x-api-key``."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


@dataclass(frozen=True, slots=True)
class _Entry:
    secret: bytes
    key: ClientKey
    allows: Callable[[str], bool]


def _allow(globs: tuple[str, ...] | None) -> Callable[[str], bool]:
    if globs is None:
        return lambda model: True
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
    return lambda model: pattern.match(model) is not None


class Keyring:
    """The client keys of one ``server:`` section. ``open`` when it has none (the server then
    refuses a non-loopback listen unless ``auth: none``) or when ``auth: none``."""

    def __init__(self, server: ServerConfig) -> None:
        self.open = server.auth == "none" or not server.keys
        self._entries = tuple(
            _Entry(_reveal(k.key).encode(), k, _allow(k.models)) for k in server.keys.values()
        )

    def find(self, token: str | None) -> ClientKey | None:
        """The key ``token`` is, compared with every key in constant time (how long it takes
        says nothing about which key, or how much of one, matched)."""
        if token is None:
            return None
        given = token.encode()
        found: ClientKey | None = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry.secret):
                found = entry.key
        return found

    def allows(self, key: ClientKey | None, model: str) -> bool:
        """Whether ``key`` may request ``model`` (any model on an open gateway)."""
        if key is None:
            return True
        for entry in self._entries:
            if entry.key is key:
                return entry.allows(model)
        return False

    def visible(self, key: ClientKey | None, names: list[str]) -> list[str]:
        """Those of ``names`` that ``key`` may request."""
        return [n for n in names if self.allows(key, n)]


def _reveal(value: Secret | str) -> str:
    return value.reveal() if isinstance(value, Secret) else value
