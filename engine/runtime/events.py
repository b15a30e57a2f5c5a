"""Subscriptions in, notifications out: the hook points (attempt start/end, retry, failover, breaker,
shared state) the executor and the engine fire, free when nobody listens."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from engine.result import Attempt

if TYPE_CHECKING:
    from engine.runtime.state import StateWarning

__all__ = [
    "EVENT_NAMES",
    "AttemptEnded",
    "AttemptStarted",
    "BreakerChanged",
    "Event",
    "EventName",
    "FailingOver",
    "Hooks",
    "Retrying",
    "StateChanged",
]

EventName = Literal["attempt_start", "attempt_end", "retry", "failover", "breaker", "state"]
EVENT_NAMES: Final = ("attempt_start", "attempt_end", "retry", "failover", "breaker", "state")

_log = logging.getLogger("engine.events")


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """A try is about to go on the wire. ``at`` is ``time.perf_counter()``."""

    target: str
    try_number: int  # 1-based, per target
    at: float
    type: Literal["attempt_start"] = "attempt_start"


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """A try finished (any outcome, including ``skipped``); its latency is in ``attempt``."""

    attempt: Attempt
    at: float
    type: Literal["attempt_end"] = "attempt_end"


@dataclass(frozen=True, slots=True)
class Retrying:
    """The same target is tried again after ``delay`` seconds."""

    target: str
    try_number: int  # the try about to happen, 1-based
    delay: float
    attempt: Attempt  # the failed try
    at: float
    type: Literal["retry"] = "retry"


@dataclass(frozen=True, slots=True)
class FailingOver:
    """A target (or a nested group) gave up; the route moves on to the next member, if any."""

    target: str
    attempt: Attempt | None  # the try that gave up (``None`` when a nested group failed)
    at: float
    type: Literal["failover"] = "failover"


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    """A circuit changed state: ``closed``, ``open`` or ``half_open``."""

    circuit: str
    state: str
    at: float
    type: Literal["breaker"] = "breaker"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The shared state backend (Redis) went away or came back: ``warning.event`` is
    ``degraded`` (requests go on without the shared cache, limits and circuits) or
    ``recovered``. Fired once per outage, not per request."""

    warning: StateWarning
    at: float
    type: Literal["state"] = "state"


Event = AttemptStarted | AttemptEnded | Retrying | FailingOver | BreakerChanged | StateChanged
Callback = Callable[[Any], Any]


class Hooks:
    """Callbacks per event name. Each slot is a tuple, empty (falsy) when nobody subscribed, so the
    executor guards every notification with one attribute test and builds no event object.

    Callbacks are called synchronously in the request's task; a callback that returns an awaitable
    has it scheduled as a task. A callback that raises is logged and otherwise ignored.
    """

    __slots__ = ("_tasks", "attempt_end", "attempt_start", "breaker", "failover", "retry", "state")

    def __init__(self) -> None:
        self.attempt_start: tuple[Callback, ...] = ()
        self.attempt_end: tuple[Callback, ...] = ()
        self.retry: tuple[Callback, ...] = ()
        self.failover: tuple[Callback, ...] = ()
        self.breaker: tuple[Callback, ...] = ()
        self.state: tuple[Callback, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, callback: Callback) -> Callable[[], None]:
        """Subscribe; returns a function that unsubscribes."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; expected one of {', '.join(EVENT_NAMES)}")
        setattr(self, name, (*getattr(self, name), callback))

        def off() -> None:
            current: tuple[Callback, ...] = getattr(self, name)
            if callback in current:
                i = current.index(callback)
                setattr(self, name, current[:i] + current[i + 1 :])

        return off

    def fire(self, callbacks: tuple[Callback, ...], event: Event) -> None:
        for callback in callbacks:
            try:
                result = callback(event)
            except Exception:
                _log.exception("event callback %r failed on %s", callback, event.type)
                continue
            if result is not None and inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
