"""JSON in and out of the gateway: orjson when installed (the ``serve`` extra; measured faster on
the request path), else the standard library, with the same results."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DecodeError", "dumps", "loads"]

try:
    import orjson

    DecodeError: type[ValueError] = orjson.JSONDecodeError

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON (non-ASCII kept as is)."""
        return orjson.dumps(value)

    def loads(data: bytes) -> Any:
        """Any JSON value; ``DecodeError`` for malformed JSON or invalid UTF-8."""
        return orjson.loads(data)

except ImportError:  # pragma: no cover - the serve extra installs orjson
    DecodeError = ValueError

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)
