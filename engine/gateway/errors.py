"""What the gateway answers instead of a routed response: a ``Refusal`` (status, message, extra
headers) raised anywhere in a handler and written in the endpoint's dialect, and the status of
each engine error (the contract's table), with what tells an SDK whether and when to try again."""

from __future__ import annotations

import math

from engine.errors import (
    DeadlineExceeded,
    NoRouteError,
    ProviderError,
    RequestError,
    RouteError,
)
from engine.result import Attempt

__all__ = ["Refusal", "refusal_of"]


class Refusal(Exception):
    """An answer with an error ``status`` (``kind``: the dialect's error type, when the
    status alone does not say it; ``headers``: e.g. Retry-After; ``relayed``: a provider's own
    refusal passed on, not one of the gateway's)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        relayed: bool = False,
    ) -> None:
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers
        self.relayed = relayed
        super().__init__(message)


def refusal_of(error: RequestError | RouteError) -> Refusal:
    """The answer to an engine error: 400 a request it cannot route as given, 404 no route, the
    provider's own status and message for a ``ProviderError`` (relayed: none of the gateway's own
    error codes), 504 a deadline, 502 every target failed; the last two with ``retry_hints``."""
    if isinstance(error, RequestError):
        return Refusal(400, str(error))
    if isinstance(error, NoRouteError):
        return Refusal(404, error.message)
    if isinstance(error, DeadlineExceeded):
        return Refusal(504, error.message)
    hints = retry_hints(error)
    if isinstance(error, ProviderError):
        status = error.status if error.status is not None and 400 <= error.status < 600 else 502
        said = error.body.strip()  # (masked of the provider's secrets already)
        message = f"{error.message}: {said}" if said else error.message
        return Refusal(status, message, headers=hints, relayed=True)
    return Refusal(502, error.message, headers=hints)


# what a try that failed this way may not do again: the wire, the provider's load, the clock
_TRANSIENT = frozenset(
    {
        "timeout",
        "connect",
        "reset",
        "protocol",
        "circuit_open",
        "rate_limited",
        "cancelled",
        "deadline",
        "closed",
    }
)


def retry_hints(error: RouteError) -> tuple[tuple[bytes, bytes], ...]:
    """The headers both official SDKs read before they retry a 429 or 5xx on their own:
    ``retry-after`` (seconds, rounded up: the soonest a provider said it has room again) and
    ``x-should-retry: false`` when every try failed as the same request would fail again (a
    provider's 4xx but 408/409/429, a template, the context window, a route constraint)."""
    failed = [a for a in error.attempts if a.outcome != "ok"]
    waits = [a.retry_after for a in failed if a.retry_after is not None and a.retry_after > 0]
    out: list[tuple[bytes, bytes]] = []
    if waits:
        out.append((b"retry-after", b"%d" % math.ceil(min(waits))))
    if failed and not any(_transient(a) for a in failed):
        out.append((b"x-should-retry", b"false"))
    return tuple(out)


def _transient(attempt: Attempt) -> bool:
    if attempt.kind == "status":
        status = attempt.status
        return status is None or status >= 500 or status in (408, 409, 429)
    return attempt.kind is None or attempt.kind in _TRANSIENT
