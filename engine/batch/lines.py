"""The batch's files: OpenAI Batch API input lines in (``custom_id``, ``method``, ``url``,
``body``), the requests to send out, with each malformed line's number and reason; and the output
of an earlier run in, the ``custom_id``s it answered out (a torn last line, and failed answers to
ask again, removed from the file first, atomically)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["ENDPOINTS", "Input", "Item", "Previous", "read_input", "read_previous"]

ENDPOINTS: Final = frozenset({"/v1/chat/completions", "/chat/completions"})


@dataclass(frozen=True, slots=True)
class Item:
    """One request of the batch: its input line number, ``custom_id`` and request body."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(slots=True)
class Input:
    """The input file read: its requests, its malformed lines (``(line, reason)``) and its
    duplicate ``custom_id``s (``(line, custom_id, first line)``)."""

    items: list[Item] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[int, str, int]] = field(default_factory=list)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def _item(number: int, raw: bytes) -> Item | str:
    """The line's request, or why it is malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({exc})"
    if not isinstance(data, dict):
        return "not a JSON object"
    cid = data.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return "custom_id must be a non-empty string"
    if data.get("method", "POST") != "POST":
        return f"method must be POST, got {data.get('method')!r}"
    if data.get("url") not in ENDPOINTS:
        return f"url must be /v1/chat/completions (the only endpoint batched here), got {data.get('url')!r}"
    body = data.get("body")
    if not isinstance(body, dict):
        return "body must be a JSON object (a chat completion request)"
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}  # never streamed
    return Item(number, cid, body)


def read_input(path: Path) -> Input:
    """Every line of ``path``: its requests, malformed lines and duplicate ``custom_id``s."""
    out = Input()
    first: dict[str, int] = {}
    for number, raw in _lines(path):
        item = _item(number, raw)
        if isinstance(item, str):
            out.malformed.append((number, item))
        elif item.custom_id in first:
            out.duplicates.append((number, item.custom_id, first[item.custom_id]))
        else:
            first[item.custom_id] = number
            out.items.append(item)
    return out


@dataclass(slots=True)
class Previous:
    """What an earlier run left in the output: the ``custom_id``s answered, and what was removed
    so that they are asked again (failed answers, a torn last line, unreadable lines)."""

    answered: set[str] = field(default_factory=set)
    failed: int = 0
    torn: bool = False
    unreadable: int = 0

    @property
    def rewritten(self) -> bool:
        return bool(self.failed or self.torn or self.unreadable)


def _answered(raw: bytes) -> str | bool | None:
    """The ``custom_id`` of a successful answer line; ``None`` for a failed one; ``False`` for a
    line that is not an output line."""
    try:
        data = json.loads(raw)
        cid = data["custom_id"]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        return False
    if not isinstance(cid, str):
        return False
    response = data.get("response")
    ok = data.get("error") is None and isinstance(response, dict) and response.get("status_code") == 200
    return cid if ok else None


def read_previous(path: Path) -> Previous:
    """The answers already in ``path`` (none when it does not exist). A last line without its
    newline (a write cut short), the failed answers and any unreadable line are removed, by
    writing the rest to a temporary file that replaces ``path`` (fsynced first), so that the
    file holds each answered ``custom_id`` once and the rerun appends the others."""
    prev = Previous()
    if not path.exists():
        return prev
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with its newline
    prev.torn = bool(tail)
    kept: list[bytes] = []
    for raw in lines:
        if not raw.strip():
            continue
        cid = _answered(raw)
        if cid is False:
            prev.unreadable += 1
        elif cid is None:
            prev.failed += 1
        elif isinstance(cid, str) and cid not in prev.answered:
            prev.answered.add(cid)
            kept.append(raw)
        else:
            prev.unreadable += 1  # the same custom_id answered twice: the first is kept
    if prev.rewritten:
        _replace(path, b"".join(raw + b"\n" for raw in kept))
    return prev


def _replace(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
