"""Small value types shared by every stage: durations, sizes, secrets and target references."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = [
    "MASK",
    "Scrubber",
    "Secret",
    "TargetRef",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

MASK: Final = "***"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)
_BYTES = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    None: 1,
}


def parse_duration(value: object) -> float:
    """Return seconds for ``250ms``, ``5s``, ``1.5s``, ``10m``, ``1h`` or a bare number of seconds.

    Raises ``ValueError`` with a readable message for anything else (including negatives and bools).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 250ms, 5s, 10m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"duration must be a finite number of seconds >= 0, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
    raise ValueError(f"expected a duration like 250ms, 5s, 10m or 1h, got {value!r}")


def format_duration(seconds: float) -> str:
    """Canonical short text for a duration: ``250ms``, ``5s``, ``1.5s``, ``10m``, ``1h``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{round(seconds, 3):g}s"


def parse_size(value: object) -> int:
    """Return bytes for ``512KB``, ``16MiB``, ``1.5GB``, ``100B`` or a bare number of bytes (KB,
    MB, GB are powers of 1000; KiB, MiB, GiB of 1024; units in any case).

    Raises ``ValueError`` with a readable message for anything else, including bools and sizes
    below one byte.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 512KB or 16MiB, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")) or number < 1:
            raise ValueError(f"size must be a finite number of bytes >= 1, got {value!r}")
        return round(number)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2)
            size = round(float(m.group(1)) * _BYTES[unit.lower() if unit else None])
            if size >= 1:
                return size
            raise ValueError(f"size must be at least 1 byte, got {value!r}")
    raise ValueError(f"expected a size like 512KB, 16MiB or a number of bytes, got {value!r}")


def format_size(size: int) -> str:
    """Canonical short text for a size in bytes: ``32MiB``, ``512KiB``, ``1GB``, ``1500B``."""
    for unit in ("GB", "GiB", "MB", "MiB", "KB", "KiB"):
        scale = _BYTES[unit.lower()]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


class Secret:
    """A value that came from the environment: masked in ``repr`` and ``str``; ``reveal()`` opens it.

    ``parts`` are the environment values it was built from (``"Bearer ${KEY}"`` has the key as its
    part): a secret is masked wherever one of them appears, also inside longer text.
    """

    __slots__ = ("_parts", "_value")

    def __init__(self, value: str, parts: tuple[str, ...] | None = None) -> None:
        self._value = value
        self._parts = (value,) if parts is None else parts

    def reveal(self) -> str:
        return self._value

    @property
    def parts(self) -> tuple[str, ...]:
        """The environment values in it (never shown; what ``Scrubber`` masks, with the whole)."""
        return self._parts

    def masked(self) -> str:
        """The value with each environment part shown as ``***`` (``redis://h:6379?password=***``)."""
        return Scrubber(self._parts, shortest=1).scrub(self._value, limit=None)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:  # pickling would leak it into caches / logs
        raise TypeError("Secret values cannot be pickled")


MIN_SECRET: Final = 4  # shorter environment values ("us", "1") are not masked inside other text


class Scrubber:
    """Masks the values of some secrets in any text (error bodies that echo a key, URLs, Redis
    errors that name the host), then cuts it: masking comes first, so a cut never keeps the
    beginning of a secret."""

    __slots__ = ("_pattern",)

    def __init__(self, values: Iterable[str], *, shortest: int = MIN_SECRET) -> None:
        found = {v for v in values if len(v) >= max(shortest, 1)}
        longest_first = sorted(found, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if found else None

    @classmethod
    def of(cls, values: Iterable[object]) -> Scrubber:
        """A scrubber for every ``Secret`` among ``values``: the whole value, its parts and, of a
        URL among them, the pieces an error may quote alone (host, user, password)."""
        found: list[str] = []
        for s in values:
            if isinstance(s, Secret):
                for v in (s.reveal(), *s.parts):
                    found.append(v)
                    if "://" in v:
                        found += _url_pieces(v)
        return cls(found)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str, limit: int | None = 300) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return text if limit is None else text[:limit]


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A parsed target string: ``provider/model``, a provider alone, or a group name.

    ``head`` is the part before the first ``/``; ``model`` is everything after it (may contain
    ``/`` and ``:``) or ``None`` when the string names a provider or a group.
    """

    head: str
    model: str | None

    @classmethod
    def parse(cls, text: str) -> TargetRef:
        head, sep, model = text.partition("/")
        return cls(head, model if sep else None)

    def __str__(self) -> str:
        return self.head if self.model is None else f"{self.head}/{self.model}"


def _url_pieces(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        pieces = [parts.netloc, parts.hostname, parts.username, parts.password]
        pieces.append(f"{parts.hostname}:{parts.port}" if parts.port else None)
    except ValueError:  # not a URL after all
        return []
    return [q for p in pieces if p for q in {p, unquote(p)}]
