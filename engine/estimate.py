"""A request in, its estimated tokens and cost per target out, before anything is sent: the rate
limiter's estimate (text characters / 4, plus the answer's ``max_tokens``) and routes.yaml's
prices. ``Engine.estimate()`` and ``engine plan`` show it; the rate limiter counts the same."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from engine.graph import Price
from engine.result import Usage

__all__ = ["DEFAULT_MAX_TOKENS", "estimate", "estimate_tokens", "output_tokens", "prompt_tokens"]

DEFAULT_MAX_TOKENS: Final = 256  # the answer's tokens assumed when a request sets no max_tokens


def prompt_tokens(request: Mapping[str, Any]) -> int:
    """A cheap upper-ish estimate of a request's input tokens: its text characters / 4, plus 1."""
    chars = len(request.get("system") or "")
    for m in request.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return chars // 4 + 1


def output_tokens(request: Mapping[str, Any], default: int = DEFAULT_MAX_TOKENS) -> int:
    """The answer's tokens at most: ``max_tokens``, or ``default`` when the request sets none."""
    out = request.get("max_tokens")
    return out if isinstance(out, int) and out > 0 else default


def estimate_tokens(request: Mapping[str, Any], default_output: int = DEFAULT_MAX_TOKENS) -> int:
    """Input and output tokens together, as providers count both against tpm."""
    return prompt_tokens(request) + output_tokens(request, default_output)


def estimate(request: Mapping[str, Any], price: Price | None) -> tuple[int, int, float | None]:
    """(input tokens, output tokens, cost in USD at ``price``; ``None`` without a price)."""
    tokens_in, tokens_out = prompt_tokens(request), output_tokens(request)
    cost = price.cost(Usage(tokens_in, tokens_out)) if price is not None else None
    return tokens_in, tokens_out, cost
