"""Requests in, cached responses out: the response cache over any backend's ``Store``, keyed by
sha256 of (endpoint identity, model, rendered body), values as Python objects in process and as
versioned JSON in a shared store."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.result import ReasoningBlock, Response, ToolCall, Usage, reasoning_text
from engine.runtime.state.base import Store

__all__ = ["ResponseCache", "decode_response", "encode_response"]


class ResponseCache:
    """Responses by ``key(target_key, body)``; hits come back with ``cached=True``, no attempts and
    no raw body. ``ttl`` is ``cache.responses.ttl`` (``None``: nothing is stored). It is also the
    ``Entries`` of a remote backend's ``Flights`` (``dumps``/``loads``: the store's JSON)."""

    __slots__ = ("_store", "ttl")

    def __init__(self, store: Store, ttl: float | None) -> None:
        self._store = store
        self.ttl = ttl

    @staticmethod
    def key(endpoint: str, body: bytes | str) -> str:
        """sha256 of the endpoint (the connection's identity: kind, URL and a digest of the
        credentials; and the model) and the rendered body. The credentials enter only as a
        digest, so keys are safe to share and to log."""
        h = hashlib.sha256(endpoint.encode())
        h.update(b"\x00")
        h.update(body if isinstance(body, bytes) else body.encode())
        return h.hexdigest()

    async def get(self, key: str) -> Response | None:
        value = await self._store.get(key)
        if value is None:
            return None
        if type(value) is Response:
            return value
        try:
            return decode_response(value)
        except (KeyError, TypeError, ValueError):  # a foreign or older entry: treat as a miss
            return None

    async def set(self, key: str, response: Response) -> None:
        if self.ttl is None:
            return
        stored = Response(
            text=response.text,
            provider=response.provider,
            model=response.model,
            finish_reason=response.finish_reason,
            tool_calls=response.tool_calls,
            usage=response.usage,
            cost=response.cost,
            cached=True,
            reasoning=response.reasoning,
            reasoning_blocks=response.reasoning_blocks,
        )
        await self._store.set(key, encode_response(stored) if self._store.shared else stored, self.ttl)

    def dumps(self, response: Response) -> str:
        """The JSON text a shared store keeps (what ``set`` stores there)."""
        return json.dumps(encode_response(response))

    def loads(self, data: bytes | str) -> Response | None:
        """A stored entry read back, ``None`` if it is not one (a foreign or older entry)."""
        try:
            return decode_response(json.loads(data))
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    async def delete(self, key: str) -> None:
        await self._store.delete(key)

    async def clear(self) -> None:
        await self._store.clear()


def encode_response(r: Response) -> dict[str, Any]:
    """The JSON form kept in a shared store (version 1; the usage details and ``reasoning``
    were added later: entries without them read as none)."""
    u = r.usage
    out = {
        "v": 1,
        "text": r.text,
        "provider": r.provider,
        "model": r.model,
        "finish_reason": r.finish_reason,
        "tool_calls": [[c.id, c.name, c.arguments] for c in r.tool_calls],
        "usage": [
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        ],
        "cost": r.cost,
    }
    if r.reasoning_blocks:
        out["reasoning"] = [[b.kind, b.text, b.signature, b.redacted] for b in r.reasoning_blocks]
    return out


def decode_response(d: dict[str, Any]) -> Response:
    if d.get("v") != 1:
        raise ValueError("unknown cache entry version")
    blocks = tuple(
        ReasoningBlock(str(k), str(t), _opt(s), _opt(r)) for k, t, s, r in d.get("reasoning") or ()
    )
    return Response(
        text=d["text"],
        provider=d["provider"],
        model=d["model"],
        finish_reason=d["finish_reason"],
        tool_calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in d["tool_calls"]),
        usage=Usage(*(int(n) for n in d["usage"][:5])),
        cost=d["cost"],
        cached=True,
        reasoning=reasoning_text(blocks),
        reasoning_blocks=blocks,
    )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
