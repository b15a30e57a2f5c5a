"""The access log: one line per routed request on the logger ``engine.access``.

``text`` is ``key=value`` pairs (values with spaces or quotes are JSON-quoted); ``json`` one
object. The fields are ids, names from routes.yaml, counts and timings — never a header, a key or
the text of a prompt or an answer, so no line needs scrubbing. Nothing is built unless the logger
is enabled for the configured level (``enabled()`` is checked when the request starts).

``engine serve`` gives the logger one ``LineHandler`` and no propagation: the lines then go
straight to its stream, without the ``LogRecord`` (and the caller lookup) a handler could want.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["FIELDS", "LOGGER", "REQUEST_ID", "AccessLog", "LineHandler"]

# the id a caller gave the request in flight (the gateway's x-request-id): the line's request_id
REQUEST_ID: ContextVar[str | None] = ContextVar("engine_request_id", default=None)

LOGGER: Final = "engine.access"
FIELDS: Final = (
    "request_id",
    "route",
    "target",
    "model",
    "tries",
    "outcome",
    "status",
    "latency_ms",
    "ttfc_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "cache",
)
_PIPE_BUF: Final = getattr(select, "PIPE_BUF", 512)  # bytes a pipe writes whole (4,096 on Linux)
_EQ: Final = tuple(f"{name}=" for name in FIELDS)
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class AccessLog:
    """Formats and writes the lines at one level, as text or JSON."""

    __slots__ = ("json", "level", "logger")

    def __init__(self, format: str = "text", level: str = "info") -> None:
        self.logger = logging.getLogger(LOGGER)
        self.level = _LEVELS[level]
        self.json = format == "json"

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(self.level)

    def write(self, fields: Mapping[str, Any]) -> None:
        """One line of ``fields`` (``None`` values left out), in ``FIELDS`` order."""
        self.row(tuple(map(fields.get, FIELDS)))

    def row(self, values: tuple[Any, ...]) -> None:
        """One line of ``values``, one per name of ``FIELDS`` (``None``: left out)."""
        handler = self._direct()
        if handler is not None and not self.json:  # the usual case: no dict, no record
            handler.line(_line(values))
            return
        items = {k: v for k, v in zip(FIELDS, values, strict=True) if v is not None}
        if self.json:
            line = json.dumps(items, separators=(",", ":"))
        else:
            line = " ".join([f"{k}={_text(v)}" for k, v in items.items()])
        if handler is not None:
            handler.line(line)
        else:
            self.logger.log(self.level, line, extra={"access": items})

    def _direct(self) -> LineHandler | None:
        """The handler to write to straight, when nothing else would see the record: the
        logger's only handler is a ``LineHandler``, nothing filters, nothing propagates."""
        logger = self.logger
        handlers = logger.handlers
        if len(handlers) != 1 or logger.propagate or logger.filters or not logger.isEnabledFor(self.level):
            return None
        handler = handlers[0]
        if type(handler) is not LineHandler or handler.filters or handler.level > self.level:
            return None
        return handler


class LineHandler(logging.StreamHandler[Any]):
    """A stream handler of bare lines (``%(message)s``), which also takes a line as it is.

    Lines taken in a running event loop are written at the end of the loop's turn, those of one
    turn together: one write (and syscall) for the requests that ended in it, not one each. A
    write holds at most ``PIPE_BUF`` bytes of whole lines, so the lines of several workers on one
    pipe never interleave inside a line. A record (``emit``), a ``flush`` and a line taken
    outside a loop write what is pending first: the order stays the order of the calls."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter("%(message)s"))
        self._pending: list[str] = []
        self._due: asyncio.AbstractEventLoop | None = None  # the loop whose turn writes them

    def line(self, text: str) -> None:
        """``text`` and the terminator, written at the end of this loop turn (outside a loop: now)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(text + self.terminator)
            if loop is not None and self._due is loop:
                return  # (this loop writes them already)
            self._due = loop  # (a write due on a loop that stopped for good is not waited for)
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush()
        super().emit(record)

    def flush(self) -> None:
        """The pending lines written, in writes of at most ``PIPE_BUF`` bytes, and the stream flushed."""
        self.acquire()
        try:
            pending, self._pending, self._due = self._pending, [], None
            if pending:
                self._write(pending)
            super().flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"name": LOGGER, "msg": "the access log's lines"}))
        finally:
            self.release()

    def _write(self, lines: list[str]) -> None:
        write, size, start = self.stream.write, 0, 0
        for i, text in enumerate(lines):
            size += len(text) if text.isascii() else len(text.encode())
            if size > _PIPE_BUF and i > start:
                write("".join(lines[start:i]))
                super().flush()
                start, size = i, len(text)
        write("".join(lines[start:]) if start or len(lines) > 1 else lines[0])


def _line(values: tuple[Any, ...]) -> str:
    """The text line of ``values`` (``None`` left out)."""
    return " ".join([eq + _text(v) for eq, v in zip(_EQ, values, strict=True) if v is not None])


def _text(value: Any) -> str:
    kind = type(value)
    if kind is int:  # (counts and statuses: nothing to quote; a bool is not int here)
        return int.__repr__(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if kind is str else str(value)
    if not text or " " in text or '"' in text or "=" in text or "\n" in text:
        return json.dumps(text)
    return text
