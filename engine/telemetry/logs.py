"""The access log: one line per routed request on the logger ``engine.access``.

``text`` is ``key=value`` pairs (values with spaces or quotes are JSON-quoted); ``json`` one
object. The fields are ids, names from routes.yaml, counts and timings — never a header, a key or
the text of a prompt or an answer, so no line needs scrubbing. Nothing is built unless the logger
is enabled for the configured level (``enabled()`` is checked when the request starts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["FIELDS", "LOGGER", "REQUEST_ID", "AccessLog"]

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
        items = {k: fields[k] for k in FIELDS if fields.get(k) is not None}
        if self.json:
            line = json.dumps(items, separators=(",", ":"))
        else:
            line = " ".join(f"{k}={_text(v)}" for k, v in items.items())
        self.logger.log(self.level, line, extra={"access": items})


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text
