"""The run-time half's front door: ``Supervisor`` (what the ``Engine`` facade talks to: route,
stream, swap a graph, health, listings, close) and the types its callers receive. Inside: the
executor and its try lifecycle, streaming, hedging, transports, circuits and the shared state."""

from engine.runtime.backends import TransportOption
from engine.runtime.events import (
    EVENT_NAMES,
    AttemptEnded,
    AttemptStarted,
    BreakerChanged,
    Event,
    EventName,
    FailingOver,
    Retrying,
    StateChanged,
)
from engine.runtime.health import ProviderHealth
from engine.runtime.loop import SyncStream, outside_loop
from engine.runtime.many import ManyResult, RouteMany, SyncRouteMany
from engine.runtime.state import ModelListing, RegistryStats
from engine.runtime.streaming import EventStream
from engine.runtime.supervisor import EngineOptions, RequestLike, Supervisor

__all__ = [
    "EVENT_NAMES",
    "AttemptEnded",
    "AttemptStarted",
    "BreakerChanged",
    "EngineOptions",
    "Event",
    "EventName",
    "EventStream",
    "FailingOver",
    "ManyResult",
    "ModelListing",
    "ProviderHealth",
    "RegistryStats",
    "RequestLike",
    "Retrying",
    "RouteMany",
    "StateChanged",
    "Supervisor",
    "SyncRouteMany",
    "SyncStream",
    "TransportOption",
    "outside_loop",
]
