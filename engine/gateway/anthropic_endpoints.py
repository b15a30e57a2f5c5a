"""The server's endpoints of the Anthropic dialect: ``POST /v1/messages`` (the routed handler the
OpenAI endpoint uses too) and ``POST /v1/messages/count_tokens`` (``Engine.count_tokens``)."""

from __future__ import annotations

from engine.errors import RequestError, RouteError
from engine.gateway.app import Call, Endpoint
from engine.gateway.dialect import Dialect
from engine.gateway.errors import refusal_of
from engine.gateway.routed import prepare, routed, watching
from engine.result import Usage

__all__ = ["count_tokens", "table"]


def table(messages: Dialect, count: Dialect) -> dict[str, Endpoint]:
    return {
        "/v1/messages": Endpoint(messages, {"POST": routed}),
        "/v1/messages/count_tokens": Endpoint(count, {"POST": count_tokens}),
    }


async def count_tokens(call: Call) -> None:
    """``{"input_tokens": N}``: the provider's own count where it has one, else the estimate.
    Counted against the key's rpm as any request; its tokens are given back (nothing was spent)."""
    request, tokens = await prepare(call)
    counted = await watching(call, _count(call, request))
    if counted is None:
        return  # the client went away
    await call.gateway.quota.settle(call.key, Usage(), tokens)
    await call.reply(200, {"input_tokens": counted})


async def _count(call: Call, request: dict[str, object]) -> int:
    try:
        counted: int = await call.gateway.engine.count_tokens(request)
        return counted
    except (RequestError, RouteError) as exc:
        raise refusal_of(exc) from None
