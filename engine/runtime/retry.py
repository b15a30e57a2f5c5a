"""A classifier and one failed try in, a decision out: retry on the same target, fail over, or stop;
and how long to wait before a retry (backoff with jitter, or the provider's Retry-After)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

from engine.graph import Backoff, Classifier

__all__ = ["breaker_failure", "can_fail_over", "can_retry", "parse_retry_after", "retry_delay"]

_OVERLOAD: Final = frozenset({408, 429})


def can_retry(classifier: Classifier, status: int | None, error: str | None) -> bool:
    if error is not None:
        return error in classifier.retry_errors
    return status in classifier.retry_status


def can_fail_over(classifier: Classifier, status: int | None, error: str | None) -> bool:
    """A provider's context-length error fails over when the classifier names ``context`` or
    its status (so a classifier that failed over on 400 before ``context`` existed still does)."""
    if error == "context":
        return error in classifier.failover_errors or status in classifier.failover_status
    if error is not None:
        return error in classifier.failover_errors
    return status in classifier.failover_status


def breaker_failure(status: int | None, error: str | None) -> bool:
    """Whether a failed try counts against the provider's circuit: transport errors, 5xx, 408 and
    429 do; client errors (400, 401, 404, ...) describe the request or the config, not the
    provider's health, and do not (a context-length error is one of them)."""
    if error is not None:
        return error != "context"
    return status is not None and (status >= 500 or status in _OVERLOAD)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else ``None``.

    A value that is not a finite number (``nan``, ``inf``, ``1e999``) is ignored, so the other
    header or the backoff applies; a negative one, or a date in the past, means now. A finite
    value past the deadline stays what it is: the caller fails over instead of sleeping.
    """
    ms = _seconds(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _seconds(value: str | None) -> float | None:
    """A finite number (at least 0), else ``None``."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def retry_delay(backoff: Backoff, retry: int, rand: float, retry_after: float | None) -> float:
    """The sleep before retry number ``retry`` (1-based): the provider's Retry-After when given
    (and honoured), else exponential backoff capped at ``max``, plus ``rand`` times the jitter."""
    if retry_after is not None:
        return retry_after
    return backoff.delay(retry, rand)
