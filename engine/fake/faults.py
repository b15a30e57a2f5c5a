"""Directive text (an ``x-fake`` header, a ``[[fake: ...]]`` marker, a program entry) goes in; a
frozen ``Fault`` saying what to break comes out, and ``Programs`` hands out one fault per request.

Syntax: tokens separated by spaces, commas or semicolons; ``key=value`` or a flag; a bare number is a
status. Durations are ``250ms``, ``2s``, ``1.5s``, ``1m`` or bare seconds. See ``DIRECTIVES``.
"""

from __future__ import annotations

import random
import re
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

__all__ = ["DIRECTIVES", "NO_FAULT", "Fault", "Program", "Programs", "parse", "seconds"]

DIRECTIVES = {
    "ok": "no fault (a program entry that lets the request through)",
    "status=N": "answer with HTTP status N in the kind's error shape (a bare N means the same)",
    "retry_after=S": "add a Retry-After: S header (seconds, as written)",
    "retry_after_ms=N": "add a retry-after-ms: N header",
    "latency=D": "wait D before sending the status line and headers",
    "reset": "close the TCP connection abruptly (RST) without any response",
    "truncate": "send half of the body (or stream), then close the connection",
    "malformed": "200 with a body that is not JSON (streams: one malformed event in the middle)",
    "die_after=N": "streams: send N events, then drop the connection with no terminator",
    "stream_error": "streams: send half the events, then the kind's in-band error event",
    "chunk_delay=D": "streams: wait D between events",
    "chunks=N": "streams: split the reply into exactly N pieces (default: one word each)",
    "words=N": "reply with N deterministic filler words instead of the echo",
    "tool": "answer with a call to the first offered tool (tool=NAME: call NAME, offered or not)",
    "cached=N": "report N more prompt tokens, read from the prompt cache (usage shows them cached)",
    "cache_write=N": "report N more prompt tokens, written to the prompt cache (anthropic only)",
    "too_long": "answer 400 with the kind's own 'context length exceeded' error",
    "stop_reason=R": "anthropic: end a text answer with stop_reason R (pause_turn or refusal; "
    "openai: refusal is finish_reason content_filter)",
}
_STOP_REASONS = ("pause_turn", "refusal")

_SPLIT = re.compile(r"[\s,;]+")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def seconds(text: str) -> float:
    """``250ms`` / ``2s`` / ``1.5`` / ``1m`` as seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use 250ms, 2s, 1.5s or 1m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request; the defaults mean 'behave'."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    latency: float = 0.0
    reset: bool = False
    truncate: bool = False
    malformed: bool = False
    die_after: int | None = None
    stream_error: bool = False
    chunk_delay: float | None = None
    chunks: int | None = None
    words: int | None = None
    tool: str | None = None  # "" = the first offered tool
    cached: int | None = None
    cache_write: int | None = None
    too_long: bool = False
    stop_reason: str | None = None
    label: str = ""  # the directive text it came from (for stats)

    def merge(self, other: Fault) -> Fault:
        """``self`` with every field ``other`` sets overriding it (labels are joined)."""
        if other is NO_FAULT:
            return self
        if self is NO_FAULT:
            return other
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(other)
            if f.name != "label" and getattr(other, f.name) != f.default
        }
        label = " ".join(x for x in (self.label, other.label) if x)
        return replace(self, **changes, label=label)

    @property
    def breaks(self) -> bool:
        """True when the fault replaces the normal answer before any body is built."""
        return self.reset or self.too_long or (self.status is not None and self.status >= 400)


NO_FAULT = Fault()


def _int(key: str, value: str | None) -> int:
    if value is None or not value.isdigit():
        raise ValueError(f"{key} needs a whole number, got {value!r}")
    return int(value)


def _apply(values: dict[str, Any], key: str, value: str | None) -> None:
    if key.isdigit() and value is None:
        values["status"] = int(key)
    elif key == "ok":
        pass
    elif key in ("reset", "truncate", "malformed", "stream_error", "too_long"):
        values[key] = True
    elif key == "tool":
        values["tool"] = value or ""
    elif key in ("status", "die_after", "chunks", "words", "cached", "cache_write"):
        values[key] = _int(key, value)
    elif key in ("latency", "chunk_delay"):
        values[key] = seconds(value or "")
    elif key == "retry_after":
        values[key] = str(seconds(value or "")).removesuffix(".0")
    elif key == "stop_reason":
        if value not in _STOP_REASONS:
            raise ValueError(f"stop_reason is one of {', '.join(_STOP_REASONS)}, got {value!r}")
        values[key] = value
    elif key == "retry_after_ms":
        values[key] = str(_int(key, value))
    else:
        raise ValueError(f"unknown fake directive {key!r} (known: {', '.join(DIRECTIVES)})")


@lru_cache(maxsize=512)
def parse(text: str) -> Fault:
    """Parse directive text such as ``"status=503 retry_after=2"``; ValueError on a bad token."""
    values: dict[str, Any] = {}
    for token in _SPLIT.split(text.strip()):
        if token:
            key, eq, value = token.partition("=")
            _apply(values, key.strip().lower(), value.strip() if eq else None)
    if values.get("chunks") == 0:
        raise ValueError("chunks must be at least 1")
    return Fault(label=text.strip(), **values)


class Program:
    """A queue of faults consumed one per request, or (with ``rate``) a seeded random fault stream."""

    def __init__(
        self, faults: Iterable[str | Fault], rate: float | None = None, seed: int | None = None
    ) -> None:
        items = [f if isinstance(f, Fault) else parse(str(f)) for f in faults]
        if rate is not None and not (0.0 <= rate <= 1.0):
            raise ValueError("rate must be between 0 and 1")
        if rate is not None and not items:
            raise ValueError("a random program needs at least one fault to choose from")
        self.rate = rate
        self._items: Sequence[Fault] = items
        self._queue: deque[Fault] = deque(items)
        self._rng = random.Random(seed)

    @property
    def exhausted(self) -> bool:
        return self.rate is None and not self._queue

    def next(self) -> Fault | None:
        """The fault for the next request; None when the queue is used up or the dice say no."""
        if self.rate is None:
            return self._queue.popleft() if self._queue else None
        if self._rng.random() < self.rate:
            return self._rng.choice(self._items)
        return NO_FAULT


@dataclass(frozen=True, slots=True)
class _Scope:
    where: str | None  # None (every chat call), a kind name, or a path prefix starting with "/"
    model: str | None

    def matches(self, kind: str, path: str, model: str | None, chat: bool) -> bool:
        if self.model is not None and self.model != model:
            return False
        if self.where is None or not self.where.startswith("/"):  # a kind
            return chat and self.where in (None, kind)
        return path.startswith(self.where)

    @property
    def rank(self) -> int:
        return (self.model is not None) + (self.where is not None)


class Programs:
    """The server's programs, most specific scope first; thread-safe (tests program from outside)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[_Scope, Program]] = []

    def set(self, where: str | None, program: Program, model: str | None = None) -> None:
        """Install ``program`` for a scope (replacing the one there): None = every chat call, a
        kind name = that kind's chat calls, "/prefix" = any call whose path starts so."""
        scope = _Scope(where, model)
        with self._lock:
            items = [(s, p) for s, p in self._items if s != scope]
            items.append((scope, program))
            items.sort(key=lambda sp: -sp[0].rank)
            self._items = items

    def clear(self) -> None:
        with self._lock:
            self._items = []

    def next(self, kind: str, path: str, model: str | None, chat: bool) -> Fault:
        """Consume the fault of the first matching, unexhausted program (NO_FAULT if none)."""
        if not self._items:
            return NO_FAULT
        with self._lock:
            for scope, program in self._items:
                if scope.matches(kind, path, model, chat) and not program.exhausted:
                    return program.next() or NO_FAULT
        return NO_FAULT
