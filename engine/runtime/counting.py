"""A request's input tokens before it is sent: the provider's own count where its kind has one
(Anthropic's ``/v1/messages/count_tokens``), asked of the route's first reachable target (the
first whose circuit is not open), else the engine's estimate (``engine.estimate``, the tools
counted too)."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import ProviderError
from engine.estimate import prompt_tokens
from engine.graph import Route
from engine.providers.base import WireError, loads
from engine.result import Attempt
from engine.runtime.backends import Fault, error_detail
from engine.runtime.context import Endpoint, perf
from engine.runtime.executor import Runtime

__all__ = ["count_tokens"]


async def count_tokens(rt: Runtime, request: dict[str, Any], model: str, route: Route) -> int:
    """The input tokens of ``request`` (matched to ``route``). The provider's refusal of the
    request (a 4xx other than 429) raises ``ProviderError``; a provider that cannot answer
    (unreachable, 5xx, 429, an unreadable answer) leaves the estimate."""
    ep = _first_reachable(rt, route, model)
    if ep is None:
        return _estimated(request)
    target = ep.model if ep.model is not None else model
    url = ep.kind.count_url(ep.conn.base_url)
    if url is None:
        return _estimated(request)
    body = json.dumps(ep.kind.count_body(request, target)).encode()
    start = perf()
    try:
        reply = await ep.conn.post_json(url, body, ep.kind.request_headers(request))
    except Fault:
        return _estimated(request)
    status = reply.status
    if 200 <= status < 300:
        try:
            return ep.kind.parse_count(loads(reply.content))
        except (ValueError, WireError):
            return _estimated(request)
    if 400 <= status < 500 and status != 429:
        detail = ep.conn.scrub(error_detail(reply.content, ep.kind))
        attempt = Attempt(
            ep.label(target), "fatal", status, latency=perf() - start, kind="status", detail=detail
        )
        raise ProviderError(
            f"{ep.provider}: token count refused: {detail}", [attempt], status=status, body=detail
        )
    return _estimated(request)


def _estimated(request: dict[str, Any]) -> int:
    """The estimate of the input (``engine.estimate``: text characters / 4) with the tool
    definitions and the tool calls handed back counted as their JSON text: a coding agent's
    tools are most of its prompt, and it counts them (Claude Code's ``/context``)."""
    tools = request.get("tools") or []
    calls = [m.get("tool_calls") for m in request.get("messages") or () if type(m) is dict]
    extra = [c for c in calls if c]
    chars = len(json.dumps([tools, extra], separators=(",", ":"))) if tools or extra else 0
    return prompt_tokens(request) + chars // 4


def _first_reachable(rt: Runtime, route: Route, model: str) -> Endpoint | None:
    """The endpoint of the route's first target whose circuit is not open."""
    opened = rt.circuits.open_circuits()
    for target in route.targets:
        ep = rt.endpoints.get(id(target))
        if ep is None:
            continue
        circuit = ep.circuit_for(target.model_for(model))
        if circuit is None or circuit not in opened:
            return ep
    return None
