"""Requests in, cached responses out: the response cache over any backend's ``Store``, keyed by
sha256 of (endpoint identity, model, rendered body), values as Python objects in process and as
versioned JSON in a shared store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from engine.result import ReasoningBlock, Response, ToolCall, Usage, reasoning_text
from engine.runtime.state.base import Store
from engine.runtime.state.memory import MemoryStore

if TYPE_CHECKING:
    from hashlib import _Hash as Prefix
else:
    Prefix = object

__all__ = ["CACHE_SCOPE", "Prefix", "ResponseCache", "decode_response", "encode_response"]

# Whose answers a request may share: cached answers and identical requests in flight are shared
# only within one scope. The gateway sets it to the client key's name, so one tenant's answer
# never reaches another; "" (a library caller's default) is one scope.
CACHE_SCOPE: ContextVar[str] = ContextVar("engine_cache_scope", default="")


class _Kept:
    """An answer in an in-process store, as it came (or ``make``, which builds its cached copy);
    its cached copy is made on its first hit (so a miss that is never hit costs no copy)."""

    __slots__ = ("answer", "hit", "make")

    def __init__(self, answer: Response | None, make: Callable[[], Response] | None = None) -> None:
        self.answer = answer
        self.make = make
        self.hit: Response | None = None

    def cached(self) -> Response:
        hit = self.hit
        if hit is None and self.make is not None:
            hit = self.hit = self.make()
            self.make = None
        elif hit is None:
            a = self.answer
            assert a is not None
            hit = self.hit = Response(
                text=a.text,
                provider=a.provider,
                model=a.model,
                finish_reason=a.finish_reason,
                tool_calls=a.tool_calls,
                usage=a.usage,
                cost=a.cost,
                cached=True,
                reasoning=a.reasoning,
                reasoning_blocks=a.reasoning_blocks,
                native=a.native,
            )
        return hit


class ResponseCache:
    """Responses by ``key(target_key, body)``; hits come back with ``cached=True``, no attempts and
    no raw body (``native``, the provider's own answer, is kept). ``ttl`` is
    ``cache.responses.ttl`` (``None``: nothing is stored). It is also the ``Entries`` of a remote
    backend's ``Flights`` (``dumps``/``loads``: the store's JSON).

    On an in-process store (``local``), ``peek`` and ``keep`` are the same lookup and store
    without a coroutine: the memory hot path calls them directly."""

    __slots__ = ("_store", "local", "ttl")

    def __init__(self, store: Store, ttl: float | None) -> None:
        self._store = store
        self.local = store if isinstance(store, MemoryStore) else None
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

    @staticmethod
    def prefix(endpoint: str) -> Prefix:
        """The hash of ``endpoint`` that ``key_of`` goes on from (made once per endpoint)."""
        h = hashlib.sha256(endpoint.encode())
        h.update(b"\x00")
        return h

    @staticmethod
    def key_of(prefix: Prefix, body: bytes) -> str:
        """``key(endpoint, body)`` from ``prefix(endpoint)``."""
        h = prefix.copy()
        h.update(body)
        return h.hexdigest()

    def peek(self, key: str) -> Response | None:
        """``get`` on an in-process store."""
        assert self.local is not None
        value = self.local.lookup(key)
        return value.cached() if type(value) is _Kept else None

    def keep(self, key: str, response: Response) -> None:
        """``set`` on an in-process store."""
        assert self.local is not None
        if self.ttl is not None:
            self.local.put(key, _Kept(response), self.ttl)

    def keep_lazy(self, key: str, make: Callable[[], Response]) -> None:
        """``keep`` of an answer not built yet: ``make()`` builds its cached copy (``cached=True``,
        no attempts, no raw body) on the entry's first hit."""
        assert self.local is not None
        if self.ttl is not None:
            self.local.put(key, _Kept(None, make), self.ttl)

    async def get(self, key: str) -> Response | None:
        if self.local is not None:
            return self.peek(key)
        value = await self._store.get(key)
        if value is None:
            return None
        try:
            return decode_response(value)
        except (KeyError, TypeError, ValueError):  # a foreign or older entry: treat as a miss
            return None

    async def set(self, key: str, response: Response) -> None:
        if self.local is not None:
            self.keep(key, response)
        elif self.ttl is not None:
            await self._store.set(key, encode_response(response), self.ttl)

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
    """The JSON form kept in a shared store (version 1; the usage details, ``reasoning`` and
    ``native`` were added later: entries without them read as none)."""
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
    if r.native is not None:
        out["native"] = r.native
    return out


def decode_response(d: dict[str, Any]) -> Response:
    if d.get("v") != 1:
        raise ValueError("unknown cache entry version")
    blocks = tuple(
        ReasoningBlock(str(k), str(t), _opt(s), _opt(r)) for k, t, s, r in d.get("reasoning") or ()
    )
    native = d.get("native")
    if native is not None and type(native) is not dict:
        raise TypeError("native: expected an object")
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
        native=native,
    )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
