"""What the gateway answers instead of a routed response: a ``Refusal`` (status, message, extra
headers) raised anywhere in a handler and written in the endpoint's dialect, and the status of
each engine error (the contract's table)."""

from __future__ import annotations

from engine.errors import (
    AllTargetsFailed,
    DeadlineExceeded,
    NoRouteError,
    ProviderError,
    RequestError,
    RouteError,
)

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
    error codes), 504 a deadline, 502 every target failed."""
    if isinstance(error, RequestError):
        return Refusal(400, str(error))
    if isinstance(error, NoRouteError):
        return Refusal(404, error.message)
    if isinstance(error, DeadlineExceeded):
        return Refusal(504, error.message)
    if isinstance(error, ProviderError):
        status = error.status if error.status is not None and 400 <= error.status < 600 else 502
        said = error.body.strip()  # (masked of the provider's secrets already)
        message = f"{error.message}: {said}" if said else error.message
        return Refusal(status, message, relayed=True)
    if isinstance(error, AllTargetsFailed):
        return Refusal(502, error.message)
    return Refusal(502, error.message)
