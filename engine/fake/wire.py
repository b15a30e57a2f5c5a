"""What every wire format shares: the ``Wire`` contract (a request body in as a ``Chat``; that
format's answers, stream events, error bodies and listings out) and helpers to read request bodies
strictly, as the real APIs do. Each format lives in its own module (``wire_openai`` and so on).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from engine.fake.answer import Answer, BadRequest, Chat, strip_markers

__all__ = [
    "MALFORMED",
    "SLOT",
    "Wire",
    "dumps",
    "jtype",
    "opt_int",
    "repeat",
    "stops",
    "text",
    "typecheck",
    "user",
]

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
MALFORMED = b'{"id":"fake","choices":[{"message":{"content":"oops"}},,]'
SLOT = "\ue000slot\ue000"  # a placeholder value: see ``repeat``
_SLOT_JSON = dumps(SLOT).encode()


def repeat(template: bytes, rows: list[tuple[Any, ...]]) -> list[bytes]:
    """Many stream events from one encoded template: each row fills its ``SLOT``s, in order.

    Encoding the event once and splicing in each piece keeps long streams cheap."""
    parts = template.split(_SLOT_JSON)
    if len(parts) == 2:
        head, tail = parts
        return [head + dumps(row[0]).encode() + tail for row in rows]
    out = []
    for row in rows:
        buf = [parts[0]]
        for value, part in zip(row, parts[1:], strict=True):
            buf += (str(value).encode() if type(value) is int else dumps(value).encode(), part)
        out.append(b"".join(buf))
    return out


def text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        found = (
            p["text"] if isinstance(p.get("text"), str) else text(p.get("content"))
            for p in content
            if isinstance(p, dict)
        )
        return " ".join(t for t in found if t)
    return ""


def opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else ()


def user(chat: Chat, said: str) -> None:
    chat.user_text, chat.marker = strip_markers(said)


def jtype(value: Any) -> str:
    """The JSON type of a decoded value: null, boolean, integer, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def typecheck(
    body: Mapping[str, Any],
    fields: Mapping[str, str],
    wrong: Callable[[str, str, Any], BadRequest],
    prefix: str = "",
) -> None:
    """Raise ``wrong(path, expected, value)`` for the first field of ``body`` whose JSON type is
    not the one ``fields`` declares ("number" admits integers; "a|b" admits either; null is
    accepted as absent). Fields not declared are not checked here."""
    for key, value in body.items():
        expected = fields.get(key)
        if expected is None or value is None:
            continue
        got = jtype(value)
        allowed = expected.split("|")
        if got in allowed or (got == "integer" and "number" in allowed):
            continue
        raise wrong(prefix + key, allowed[0], value)


class Wire(ABC):
    """One wire format; stateless. The class attributes and ``route`` declare it to the server
    (``engine.fake.wires`` is the registry)."""

    name: ClassVar[str]
    base_path: ClassVar[str] = ""  # what an engine's base_url adds to the server's URL
    default_models: ClassVar[tuple[str, ...]]  # what the model listing names by default
    keyed: ClassVar[bool] = True  # requests must carry an API key

    @abstractmethod
    def route(self, method: str, path: str, headers: Any) -> tuple[str, str | None] | None:
        """(op, model named in the path) for a request this format serves, else None; op is
        "chat", "stream" or "models"."""
        raise NotImplementedError

    def streams(self, chat: Chat, op: str, query: Any) -> None:  # noqa: B027 (a hook: no-op by default)
        """Set what the path and query say of streaming (most formats say it in the body)."""

    def stream_type(self, chat: Chat) -> str:
        return "text/event-stream"

    def parse_for(self, op: str, body: Any, model: str | None) -> Chat:
        """The request of operation ``op`` (a format with operations of other bodies overrides)."""
        return self.parse(body, model)

    @abstractmethod
    def parse(self, body: Any, model: str | None) -> Chat:
        """The request as a ``Chat``; ``BadRequest`` for anything the real API refuses."""
        raise NotImplementedError

    def key(self, headers: Any, query: Any) -> str | None:
        auth = headers.get("Authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else None

    def check(self, headers: Any) -> BadRequest | None:
        """A protocol-header problem (answered 400), or None."""
        return None

    def auth_failure(self, headers: Any, missing: bool) -> BadRequest:
        """The refusal of a request without a key (``missing``) or with the wrong one."""
        return BadRequest("missing API key" if missing else "invalid API key", status=401)

    @abstractmethod
    def error(self, status: int, message: str, rid: str = "") -> dict[str, Any]:
        """The format's error body for an HTTP ``status``."""
        raise NotImplementedError

    def refuse(self, exc: BadRequest, rid: str = "") -> dict[str, Any]:
        """The error body of a refused request (``param``/``code`` where the format has them)."""
        return self.error(exc.status, exc.message, rid)

    def headers(self, rid: str) -> dict[str, str]:
        """Headers the real API sends with every answer (request ids)."""
        return {}

    @abstractmethod
    def body(self, chat: Chat, ans: Answer, rid: str) -> dict[str, Any]:
        raise NotImplementedError

    @abstractmethod
    def frames(self, chat: Chat, ans: Answer, rid: str) -> list[bytes]:
        """Every stream event, encoded, the terminator (if the format has one) last."""
        raise NotImplementedError

    def frame(self, data: bytes) -> bytes:
        return b"data: " + data + b"\n\n"

    def error_frame(self, message: str, rid: str = "") -> bytes:
        """The in-band error event of a stream that fails after it started."""
        return self.frame(dumps(self.error(500, message, rid)).encode())

    def malformed_frame(self) -> bytes:
        return self.frame(MALFORMED)

    @abstractmethod
    def models(self, names: list[str]) -> dict[str, Any]:
        raise NotImplementedError
