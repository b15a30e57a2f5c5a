"""The names that exist even when routes.yaml does not write them: speeds, classifiers, breaker,
and each kind's default base URL (from the kind registry, engine/providers)."""

from __future__ import annotations

from collections.abc import Mapping

from engine.graph import Backoff, Breaker, Classifier, Speed, frozen_map
from engine.providers import KINDS

__all__ = [
    "BUILTIN_BREAKERS",
    "BUILTIN_CLASSIFIERS",
    "BUILTIN_SPEEDS",
    "DEFAULT_BASE_URLS",
    "NO_BREAKER",
    "TRANSIENT",
]

BUILTIN_SPEEDS: Mapping[str, Speed] = frozen_map(
    {
        "fast": Speed("fast", 5.0, 10.0, 3.0, 2, Backoff(1.0, 2.0, 8.0, 0.5)),
        "medium": Speed("medium", 10.0, 15.0, 5.0, 3, Backoff(1.5, 2.0, 30.0, 0.0)),
        "slow": Speed("slow", 30.0, 30.0, 5.0, 4, Backoff(2.0, 2.0, 30.0, 0.0)),
    }
)
TRANSIENT = Classifier(
    "transient",
    frozenset({408, 429, 500, 502, 503, 504}),
    frozenset({"timeout", "connect", "reset"}),
    frozenset({401, 403, 404, 408, 429, 500, 502, 503, 504}),
    frozenset({"timeout", "connect", "reset", "protocol"}),
    True,
)
BUILTIN_CLASSIFIERS: Mapping[str, Classifier] = frozen_map(
    {
        "transient": TRANSIENT,
        "never": Classifier(
            "never", frozenset(), frozenset(), TRANSIENT.failover_status, TRANSIENT.failover_errors, True
        ),
    }
)
BUILTIN_BREAKERS: Mapping[str, Breaker] = frozen_map(
    {
        "standard": Breaker("standard", 5, 60.0, "provider"),
    }
)
# each kind's default base URL, as its module declares it
DEFAULT_BASE_URLS: Mapping[str, str] = frozen_map({k.name: k.default_base_url for k in KINDS.values()})
NO_BREAKER = "none"
