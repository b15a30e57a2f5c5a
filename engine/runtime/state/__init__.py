"""The engine's shared state: response cache with single-flight, model listings, rate limits and
the circuits' storage, in this process or shared by every instance on one Redis.

Layout, by backend rather than by piece: ``base`` holds the protocols every backend implements
(``Store``, ``Entries``, ``Flights``, ``RateLimiter``, ``SharedCircuits``, ``Backend``) and the
fail-soft ``Guard``; ``memory`` and ``redis`` are one module each, with everything that backend
is (Redis keeps two of its pieces beside it: ``redis_flights``, the response cache across
instances, a hit one round trip and a miss two; ``redis_circuits``, atomic transitions under a
versioned view); ``flight``, ``responses`` and ``listings`` are the backend-free logic over those
protocols (in-process single-flight, response entries, listing merge); ``core`` holds ``State``,
what the executor asks, and ``open_backend``, the one place that reads the URL. So a new backend
(memcached, a database) is one new module implementing ``Backend`` plus its scheme in
``open_backend``; a layout by piece (a cache module, a limits module, ... each with a class per
backend) would spread it over four.
"""

from engine.runtime.state.base import (
    WINDOW,
    Backend,
    CircuitSnapshot,
    Entries,
    Flights,
    Guard,
    RateLimiter,
    SharedCircuits,
    StateWarning,
    Store,
    Warn,
    estimate_tokens,
)
from engine.runtime.state.core import CachePolicy, SharedUnitOfWork, State, open_backend
from engine.runtime.state.flight import SingleFlight
from engine.runtime.state.listings import (
    Fetch,
    ListedModel,
    ModelListing,
    ModelRegistry,
    RegistryStats,
)
from engine.runtime.state.responses import ResponseCache

__all__ = [
    "WINDOW",
    "Backend",
    "CachePolicy",
    "CircuitSnapshot",
    "Entries",
    "Fetch",
    "Flights",
    "Guard",
    "ListedModel",
    "ModelListing",
    "ModelRegistry",
    "RateLimiter",
    "RegistryStats",
    "ResponseCache",
    "SharedCircuits",
    "SharedUnitOfWork",
    "SingleFlight",
    "State",
    "StateWarning",
    "Store",
    "Warn",
    "estimate_tokens",
    "open_backend",
]
