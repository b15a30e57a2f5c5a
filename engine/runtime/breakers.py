"""Circuit names and try outcomes in, allow/skip decisions and state changes out: the engine's circuit
breakers, kept by purgatory (in memory by default; the factory, and so its unit of work, is
injectable, e.g. to share circuits through Redis: ``State.breaker_factory``).

purgatory through its public API only: the factory's ``get_breaker`` and listeners, a breaker's
``context`` read (never written) and its async context-manager methods, and for a reload that
changes a circuit's settings a new ``Context`` registered in the unit of work's repository."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork
from purgatory.domain.model import Context

from engine.graph import Breaker

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Circuits", "Token"]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
_STATES: Final = {"closed": CLOSED, "opened": OPEN, "half-opened": HALF_OPEN}

_log = logging.getLogger("engine.breakers")
MAX_DYNAMIC: Final = 256  # per-model circuits of client-chosen (pass-through) model names

Token = Any  # an entered purgatory breaker: hand it back to ``Circuits.leave``


class _Failed(Exception):
    """What purgatory is told when a try counts against the circuit."""


_FAILED: Final = _Failed()
_NO_TOKEN: Final = object()  # the circuit store failed: the try goes ahead unguarded


class Circuits:
    """One circuit per name (``provider`` or ``provider/model``) and scope (the endpoint's
    identity: a circuit is stored as ``name@scope``, so deployments sharing a store with the same
    names but another endpoint or key never share one; a reload to another endpoint starts a
    fresh circuit).

    ``enter`` returns a token, or ``None`` when the circuit is open (the try is skipped at no
    network cost); ``leave`` records the try's outcome. ``on_change(circuit, state)`` is called on
    every state change, and ``states()`` / ``open_circuits()`` tell what this process has seen,
    by name. Circuits of client-chosen model names are bounded: past ``MAX_DYNAMIC`` of them, a
    new name shares its ``fold`` circuit (``provider/*``).
    """

    def __init__(
        self,
        factory: AsyncCircuitBreakerFactory | None = None,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.factory = factory if factory is not None else AsyncCircuitBreakerFactory()
        self._on_change = on_change
        self._seen: dict[str, tuple[str, float, float]] = {}  # key -> (state, opened_at, ttl)
        self._ttl: dict[str, float] = {}  # key -> recovery
        self._names: dict[str, str] = {}  # key -> name
        self._current: dict[str, str] = {}  # name -> the key its last try used
        self._dynamic = 0  # circuits made for client-chosen names
        # In memory, purgatory hands out the same live circuit every time: keep it and skip the
        # per-try lookup. Other units of work (Redis) load the circuit's state on every try.
        self._cache: dict[str, Any] | None = (
            {} if isinstance(self.factory.uow, AsyncInMemoryUnitOfWork) else None
        )
        self._store_down = False  # a shared store failed: logged once, until it answers again
        self.factory.add_listener(self._hook)

    def _hook(self, key: str, what: str, event: Any) -> None:
        if what != "state_changed":
            return
        state = _STATES.get(getattr(event, "state", ""), CLOSED)
        opened_at = getattr(event, "opened_at", None) or time.time()
        self._seen[key] = (state, opened_at, self._ttl.get(key, 0.0))
        if self._on_change is not None:
            self._on_change(self._names.get(key, key), state)

    async def enter(
        self, name: str, breaker: Breaker, scope: str = "", fold: str | None = None
    ) -> Token | None:
        """A token for one try, or ``None`` when the circuit is open. If the circuit store itself
        fails (a shared store unreachable), the try goes ahead: breakers must not stop traffic.
        ``fold``: ``name`` is client-chosen, and past ``MAX_DYNAMIC`` such circuits the try
        uses the ``fold`` circuit instead."""
        key = f"{name}@{scope}" if scope else name
        cache = self._cache
        brk = cache.get(key) if cache is not None else None
        if brk is None:
            if key not in self._ttl:
                if fold is not None:
                    if self._dynamic >= MAX_DYNAMIC:
                        return await self.enter(fold, breaker, scope)
                    self._dynamic += 1
                self._ttl[key] = breaker.recovery
                self._names[key] = name
            try:
                brk = await self.factory.get_breaker(key, breaker.failures, breaker.recovery)
            except Exception:
                self._store_failed(f"circuit store failed for {name}; tries go unguarded")
                return _NO_TOKEN
            if cache is not None:
                cache[key] = brk
            else:  # a shared store: another instance may have changed the circuit
                self._store_down = False
                self._adopt(key, brk.context)
        self._current[name] = key
        ctx = brk.context
        if ctx.threshold != breaker.failures or ctx.ttl != breaker.recovery:  # a reload changed it
            brk = await self._reconfigure(key, brk, breaker)
            if brk is _NO_TOKEN:
                return _NO_TOKEN
        try:
            await brk.__aenter__()
        except Exception:  # purgatory raises its OpenedState: the circuit is open
            return None
        return brk

    async def _reconfigure(self, key: str, brk: Any, breaker: Breaker) -> Any:
        """The circuit under the reloaded settings, its state kept: registered anew in the
        store (purgatory's repository API; a context's fields are not for writing)."""
        old = brk.context
        ctx = Context(
            key,
            breaker.failures,
            breaker.recovery,
            state=old.state,
            failure_count=old.failure_count or 0,
            opened_at=old.opened_at,
        )
        self._ttl[key] = breaker.recovery
        try:
            async with self.factory.uow as uow:
                await uow.contexts.register(ctx)
            brk = await self.factory.get_breaker(key, breaker.failures, breaker.recovery)
        except Exception:
            self._store_failed(f"circuit store failed for {self._names.get(key, key)}; tries go unguarded")
            return _NO_TOKEN
        if self._cache is not None:
            self._cache[key] = brk
        return brk

    def _adopt(self, key: str, ctx: Any) -> None:
        """Take the state a shared store holds as seen here (so ``plan()``, ``health()`` and the
        ``breaker`` event know of a circuit another instance opened or closed)."""
        state = _STATES.get(ctx.state, CLOSED)
        seen = self._seen.get(key)
        if seen is None and state == CLOSED:
            return
        if seen is not None and seen[0] == state:
            return
        if state == HALF_OPEN and seen is not None and seen[0] == OPEN:
            return  # our own view already turns half-open when the recovery time has passed
        self._seen[key] = (state, ctx.opened_at or time.time(), self._ttl.get(key, 0.0))
        if self._on_change is not None:
            self._on_change(self._names.get(key, key), state)

    async def leave(self, token: Token, failed: bool) -> None:
        if token is _NO_TOKEN:
            return
        try:
            if failed:
                await token.__aexit__(_Failed, _FAILED, None)
            else:
                await token.__aexit__(None, None, None)
        except Exception:
            self._store_failed("circuit store failed to record a try")

    def _store_failed(self, message: str) -> None:
        """Log a circuit store failure once per outage (every try would fail alike): one line
        naming the error (the shared state's own warning says more); the traceback at debug."""
        if self._store_down:
            _log.debug("%s", message, exc_info=True)
            return
        self._store_down = True
        error = sys.exc_info()[1]
        why = f": {type(error).__name__}: {error}" if error is not None else ""
        _log.warning("%s%s (logged once until the store answers again)", message, why)
        _log.debug("circuit store failure", exc_info=True)

    def state(self, name: str) -> str:
        """The state of circuit ``name`` (as its last try found it)."""
        seen = self._seen.get(self._current.get(name, name))
        if seen is None:
            return CLOSED
        state, opened_at, ttl = seen
        if state == OPEN and time.time() > opened_at + ttl:
            return HALF_OPEN  # the next try is the probe
        return state

    def states(self) -> dict[str, str]:
        """Every circuit this engine has used, by name, with its state."""
        return {name: self.state(name) for name in sorted(self._current)}

    def open_circuits(self) -> frozenset[str]:
        return frozenset(name for name in self._current if self.state(name) == OPEN)
