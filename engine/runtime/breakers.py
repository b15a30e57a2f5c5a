"""Circuit names and try outcomes in, allow/skip decisions and state changes out: the engine's circuit
breakers, kept by purgatory (in memory by default; the factory, and so its unit of work, is
injectable: ``State.breaker_factory``).

purgatory keeps each instance's circuits and runs their state machine (closed, opened after
``failures`` in a row, half-opened after ``recovery``, closed or opened again by the probe),
through its public API only: the factory's ``get_breaker`` and listeners, a breaker's ``context``
read (never written) and its async context-manager methods, and a new ``Context`` registered in
the unit of work's repository to take a new state (a reload's settings, another instance's
transition).

What a shared backend adds (a ``SharedUnitOfWork``: Redis): the transitions that must be exact
across instances go there, each one atomic, and the local circuit takes the answer. A failed try
is counted there (the ``failures``-th in a row opens the circuit once, for all); a success after
failures starts the count again; once ``recovery`` has passed, the half-open probe is claimed
there, so exactly one try of one instance probes (the others skip the circuit until the probe
settles it, or until its lease — ``recovery``, at least 30 s — ends if its instance died); the
probe's outcome closes or reopens it for all. A try on a closed circuit costs no round trip: the
view of the others' changes is refreshed at most every ``staleness`` seconds (one round trip,
0.5 s by default; a change reaches this instance's next try after that). While the backend is
down each instance goes on with its own circuits."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork
from purgatory.domain.model import Context

from engine.graph import Breaker
from engine.runtime.state.base import CircuitSnapshot, SharedCircuits
from engine.runtime.state.core import SharedUnitOfWork

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Circuits", "Token"]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
_STATES: Final = {"closed": CLOSED, "opened": OPEN, "half-opened": HALF_OPEN}

_log = logging.getLogger("engine.breakers")
MAX_DYNAMIC: Final = 256  # per-model circuits of client-chosen (pass-through) model names
PROBE_LEASE: Final = 30.0  # seconds, at least: how long a shared probe stays one instance's

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
        # per-try lookup. Other units of work load the circuit's state on every try.
        uow = self.factory.uow
        self._cache: dict[str, Any] | None = {} if isinstance(uow, AsyncInMemoryUnitOfWork) else None
        self._shared: SharedCircuits | None = uow.shared if isinstance(uow, SharedUnitOfWork) else None
        self._version = ""  # the shared circuits' version this view last read
        self._fresh_until = 0.0  # monotonic: the view is read again after this
        self._refreshing: asyncio.Future[None] | None = None  # the read under way
        self._probes: dict[str, tuple[Any, str, float]] = {}  # key -> our probe (breaker, claim, until)
        self._leases: dict[str, float] = {}  # key -> another instance's probe lease end (time.time)
        self._claims = (f"{os.getpid()}.{os.urandom(6).hex()}.{n}" for n in itertools.count())
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
            brk = await self._load(key, name, breaker)
            if brk is _NO_TOKEN:
                return _NO_TOKEN
        self._current[name] = key
        if self._shared is not None and time.monotonic() >= self._fresh_until:
            await self._refresh()
            brk = self._cache[key]  # type: ignore[index]
        ctx = brk.context
        if ctx.threshold != breaker.failures or ctx.ttl != breaker.recovery:  # a reload changed it
            brk = await self._reconfigure(key, brk, breaker)
            if brk is _NO_TOKEN:
                return _NO_TOKEN
        if self._shared is not None and brk.context.state != "closed":
            return await self._enter_shared(key, brk)
        try:
            await brk.__aenter__()
        except Exception:  # purgatory raises its OpenedState: the circuit is open
            return None
        return brk

    async def _load(self, key: str, name: str, breaker: Breaker) -> Any:
        """The circuit's first use here (or, on a store that is not in memory, every use)."""
        try:
            brk = await self.factory.get_breaker(key, breaker.failures, breaker.recovery)
        except Exception:
            self._store_failed(f"circuit store failed for {name}; tries go unguarded")
            return _NO_TOKEN
        if self._cache is None:  # a shared store: another instance may have changed the circuit
            self._store_down = False
            self._adopt(key, brk.context)
            return brk
        if self._shared is None:
            self._cache[key] = brk
            return brk
        # kept only once its shared state is known: a try meanwhile loads it too (not closed
        # by default while the first load is on its way)
        got = await self._shared.read([key])
        self._cache.setdefault(key, brk)
        return brk if got is None else await self._take(key, got[1][key])

    async def _refresh(self) -> None:
        """Read the shared circuits' version; if it moved, take every circuit this view holds.
        Tries that find the view stale meanwhile wait for this one read (so none acts on a view
        older than ``staleness`` and the round trip that refreshes it)."""
        pending = self._refreshing
        if pending is not None:
            await asyncio.shield(pending)
            return
        shared = self._shared
        assert shared is not None and self._cache is not None
        done = self._refreshing = asyncio.get_running_loop().create_future()
        try:
            got = await shared.read(list(self._cache), self._version)
            if got is not None:
                self._version, snapshots = got
                for key, snapshot in snapshots.items():
                    await self._take(key, snapshot)
        finally:
            self._fresh_until = time.monotonic() + shared.staleness
            self._refreshing = None
            done.set_result(None)

    async def _take(self, key: str, snap: CircuitSnapshot) -> Any:
        """The local circuit in the state the shared store holds (the same one if it is)."""
        assert self._cache is not None
        brk = self._cache[key]
        ctx = brk.context
        if snap.state == "half-opened" and not snap.granted and snap.probe_until is not None:
            self._leases[key] = snap.probe_until
        if (
            ctx.state == snap.state
            and (ctx.failure_count or 0) == snap.failures
            and (snap.state == "closed" or abs((ctx.opened_at or 0) - (snap.opened_at or 0)) < 0.05)
        ):
            return brk
        new = Context(
            key,
            ctx.threshold,
            ctx.ttl,
            state=snap.state,
            failure_count=snap.failures,
            opened_at=snap.opened_at,
        )
        async with self.factory.uow as uow:
            await uow.contexts.register(new)
        brk = self._cache[key] = await self.factory.get_breaker(key)
        self._adopt(key, new)
        return brk

    async def _enter_shared(self, key: str, brk: Any) -> Token | None:
        """A try on a shared circuit that is not closed: skipped while open or while a probe is
        out (ours or another instance's); past that, the probe is claimed on the shared store."""
        ctx = brk.context
        now = time.time()
        if ctx.state == "opened" and now <= (ctx.opened_at or 0) + ctx.ttl:
            return None
        if ctx.state == "half-opened":
            ours = self._probes.get(key)
            if ours is not None and ours[2] > now:
                return None
            if ours is None and now < self._leases.get(key, 0.0):
                return None
        assert self._shared is not None
        claim, lease = next(self._claims), max(ctx.ttl, PROBE_LEASE)
        snap = await self._shared.claim(key, claim, ctx.ttl, lease)
        if snap is not None:
            brk = await self._take(key, snap)
            if not snap.granted and snap.state != "closed":
                return None
            if snap.granted:
                self._probes[key] = (brk, claim, now + lease)
        try:
            await brk.__aenter__()  # half-open (or closed meanwhile) lets it through
        except Exception:
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
        ctx = token.context
        state, failures = ctx.state, ctx.failure_count or 0
        try:
            if failed:
                await token.__aexit__(_Failed, _FAILED, None)
            else:
                await token.__aexit__(None, None, None)
        except Exception:
            self._store_failed("circuit store failed to record a try")
        if self._shared is not None and (failed or failures or state != "closed"):
            await self._leave_shared(token, ctx, failed)

    async def _leave_shared(self, brk: Any, ctx: Any, failed: bool) -> None:
        """Tell the shared store what the try changed: the probe's outcome, a failure, or a
        success after failures; then take the circuit as it holds it."""
        shared = self._shared
        assert shared is not None
        key = ctx.name
        ours = self._probes.get(key)
        if ours is not None and ours[0] is brk:
            del self._probes[key]
            snap = await shared.settle(key, ours[1], not failed, ctx.ttl)
        elif failed:
            snap = await shared.failed(key, ctx.threshold, ctx.ttl)
        elif ctx.state == "closed":
            snap = await shared.succeeded(key)
        else:
            return
        if snap is not None:
            await self._take(key, snap)

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
