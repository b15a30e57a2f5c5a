"""The routed endpoints (``/v1/chat/completions``, ``/v1/messages``): a request in the
endpoint's dialect read, checked against its key and limits, routed through the graph, and its
answer written back whole or relayed as a stream (``engine.gateway.relay``).

A client that disconnects cancels the upstream request: a watcher task waits for ASGI's
``http.disconnect`` and cancels the handler (the try is recorded as ``cancelled``); it starts
``WATCH_AFTER`` into the request, so a quick answer costs no task."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import RequestError, RouteError
from engine.gateway.app import Call
from engine.gateway.errors import Refusal, refusal_of
from engine.gateway.http import read_body
from engine.gateway.jsonio import DecodeError, loads
from engine.graph import CacheConfig, Group, RoutingGraph
from engine.request import MAX_MODEL_LENGTH
from engine.result import Response
from engine.runtime.state.responses import CACHE_SCOPE

__all__ = ["engine_headers", "model_name_ok", "prepare", "routed", "watching"]

# a model name a client may send: what providers accept, and nothing that could steer a URL
# built from it (a pass-through Gemini target puts the model in the path)
_SAFE_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:@+/=-]*\Z")
WATCH_AFTER = 0.1  # seconds a request runs before its client's disconnect is watched for


async def prepare(call: Call) -> tuple[dict[str, Any], int]:
    """Everything before routing: the key, the body (limit, JSON, the dialect's parse), the
    model the key may use, the merged metadata, the key's own limits, the key's cache scope.
    Returns the request and the tokens the key's limiter counted for it."""
    gw = call.gateway
    if gw.draining:
        raise Refusal(503, "the server is shutting down", kind="overloaded_error")
    key = call.authenticate()
    _check_type(call.headers)
    declared = call.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    body = await read_body(call.receive, gw.config.max_body, size)
    try:
        data = loads(body)
    except DecodeError as exc:
        raise Refusal(400, f"the body is not valid JSON: {exc}") from None
    try:
        request = call.dialect.parse(data, call.headers)
    except RequestError as exc:
        raise Refusal(400, str(exc)) from None
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise Refusal(400, "bad request: model: missing (name a route or a model)")
    if len(model) > MAX_MODEL_LENGTH:  # (refused before the key's globs are matched on it)
        raise Refusal(400, f"bad request: model: is {len(model)} characters long; at most {MAX_MODEL_LENGTH}")
    if not _SAFE_MODEL.match(model) or ".." in model:
        raise Refusal(400, f"bad request: model: {model[:80]!r} has characters a model name cannot have")
    if not gw.keyring.allows(key, model):
        raise Refusal(403, f"this key may not use model {model[:80]!r}")
    request["metadata"] = _metadata(request.get("metadata"), call.headers.get("x-engine-metadata"), key)
    CACHE_SCOPE.set(key.name if key is not None else "")  # a key's cached answers are its own
    if key is None or key.limits is None:  # (no window to count in)
        return request, 0
    wait, tokens = await gw.quota.admit(key, request)
    if wait is not None:
        raise Refusal(
            429,
            f"key '{key.name if key else ''}' is over its rate limit; retry in {wait:.0f}s",
            kind="rate_limit_error",
            headers=((b"retry-after", b"%d" % wait),),
        )
    return request, tokens


def model_name_ok(model: str) -> bool:
    """Whether ``model`` is a name the routed endpoints take (length and characters)."""
    return len(model) <= MAX_MODEL_LENGTH and bool(_SAFE_MODEL.match(model)) and ".." not in model


def _check_type(headers: Mapping[str, str]) -> None:
    """A body declared as anything but JSON is refused with 400, as the contract's errors table
    has it (a request the engine cannot route as given), in the endpoint's dialect."""
    kind = headers.get("content-type")
    if kind is None or kind == "application/json":  # (what SDKs send)
        return
    if not kind.split(";", 1)[0].strip().lower().endswith(("/json", "+json")):
        raise Refusal(400, f"expected content-type: application/json, got {kind[:80]!r}")


def _metadata(body: Any, header: str | None, key: Any) -> dict[str, Any]:
    """The body's metadata, then the ``x-engine-metadata`` header's ``k=v,k2=v2``, then the
    key's own metadata: each overrides the one before."""
    if body is None:
        out: dict[str, Any] = {}
    elif isinstance(body, dict):
        out = dict(body)
    else:
        raise Refusal(400, "bad request: metadata: expected an object")
    if header:
        for item in header.split(","):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise Refusal(400, f"x-engine-metadata: {item.strip()[:80]!r} is not key=value")
            out[name.strip()] = value.strip()
    if key is not None and key.metadata:
        out.update(key.metadata)
    return out


async def routed(call: Call) -> None:
    """``POST`` a routed request: JSON, or a stream when the request says ``stream: true``."""
    request, tokens = await prepare(call)
    if request.get("stream") is True:
        from engine.gateway.relay import relay

        await relay(call, request, tokens)
        return
    try:
        response = await watching(call, call.gateway.engine.route(request))
    except (RequestError, RouteError) as exc:
        raise refusal_of(exc) from None
    if response is None:
        return  # the client went away: nothing to answer
    key = call.key
    if key is not None and key.limits is not None and key.limits.tpm is not None:
        await call.gateway.quota.settle(key, response.usage, tokens)
    headers = engine_headers(call.gateway.engine.graph, request, response)
    await call.reply(200, call.dialect.answer(response, request), headers)


async def watching(call: Call, work: Any) -> Any:
    """Await ``work`` (a coroutine) in this task, cancelled if the client disconnects
    meanwhile; ``None`` when it was. The watcher (a task waiting for ASGI's disconnect) starts
    only once ``work`` has run ``WATCH_AFTER`` seconds: most answers come sooner, and a
    disconnect before then is still seen (ASGI reports it to a late ``receive`` too)."""
    me = asyncio.current_task()
    assert me is not None
    busy, gone = True, False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await call.receive()
            if message["type"] == "http.disconnect":
                if busy:
                    gone = True
                    me.cancel()
                return

    def start() -> None:
        nonlocal watcher
        if busy:
            watcher = asyncio.get_running_loop().create_task(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, start)
    try:
        result = await work
        busy = False
        return result
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
        return None
    finally:
        busy = False
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def route_name(graph: RoutingGraph, request: Mapping[str, Any]) -> str:
    """The matched route, named by where it sends (its group or target)."""
    route = graph.match(request["model"], request.get("metadata") or {})
    if route is None:
        return ""
    return route.to.name if isinstance(route.to, Group) else route.to.key


def cache_state(cache: CacheConfig, request: Mapping[str, Any], hit: bool) -> bytes:
    """``hit``, ``miss`` (cacheable, answered upstream) or ``none`` (not cacheable)."""
    if hit:
        return b"hit"
    if cache.responses_ttl is None or request.get("stream"):
        return b"none"
    temp = request.get("temperature")
    flag = (request.get("metadata") or {}).get("cache")
    if flag is False or temp is None or temp > cache.max_temperature:
        return b"none"
    return b"miss"


def engine_headers(
    graph: RoutingGraph, request: Mapping[str, Any], response: Response
) -> list[tuple[bytes, bytes]]:
    """The routing headers of a whole answer."""
    out = [
        (b"x-engine-route", route_name(graph, request).encode()),
        (b"x-engine-provider", response.provider.encode()),
        (b"x-engine-model", response.model.encode()),
        (b"x-engine-attempts", b"%d" % len(response.attempts)),
        (b"x-engine-cache", cache_state(graph.cache, request, response.cached)),
    ]
    if response.cost is not None:
        out.append((b"x-engine-cost", f"{response.cost:.8f}".rstrip("0").rstrip(".").encode() or b"0"))
    return out
