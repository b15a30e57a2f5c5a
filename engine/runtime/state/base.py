"""What every state backend provides, as protocols (``Store``, ``Entries``, ``Flights``,
``RateLimiter``, ``SharedCircuits``, ``Backend``), and what every backend shares: the fail-soft
``Guard`` and its ``StateWarning``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from engine.estimate import estimate_tokens
from engine.graph import Provider
from engine.values import Scrubber

__all__ = [
    "WINDOW",
    "Backend",
    "CircuitSnapshot",
    "CircuitState",
    "Entries",
    "Flights",
    "Guard",
    "RateLimiter",
    "SharedCircuits",
    "StateWarning",
    "Store",
    "Warn",
    "estimate_tokens",
]

T = TypeVar("T")
D = TypeVar("D")
_log = logging.getLogger("engine.runtime.state")

WINDOW = 60.0  # seconds: rpm and tpm are per minute


class Store(Protocol):
    """Keys to values under one namespace, each for ``ttl`` seconds (``None``: no expiry). A miss
    and a backend failure both read as ``None``; writes never raise. ``shared`` stores keep
    values in another process: they must be JSON."""

    shared: bool

    async def get(self, key: str) -> Any: ...

    async def set(self, key: str, value: Any, ttl: float | None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def clear(self) -> None:
        """Remove every key of this store's namespace (and nothing else)."""
        ...


class Entries(Protocol[T]):
    """How values of one kind live in a shared store: their JSON text (``dumps``), read back by
    ``loads`` (``None``: unreadable, taken as a miss), kept ``ttl`` seconds (``None``: not kept)."""

    ttl: float | None

    def dumps(self, value: T) -> str: ...

    def loads(self, data: bytes | str) -> T | None: ...


class Flights(Protocol):
    """The response cache across the instances that share a backend (this process's own callers
    are already coalesced by ``SingleFlight``): ``run(key, call, entries)`` answers the stored
    value when there is one, else runs ``call()`` on one instance and stores its answer where the
    others find it; they wait for it, or take over if its instance dies. ``deadline`` is an
    event-loop time (``loop.time()``)."""

    async def run(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        entries: Entries[T],
        *,
        deadline: float | None = None,
    ) -> T: ...

    def stats(self) -> dict[str, int]: ...

    async def written(self) -> None:
        """The stores of ended calls sent and confirmed (``run`` sends them shortly after):
        what this instance writes next to the same keys then comes after them."""
        ...

    async def aclose(self) -> None: ...


class RateLimiter(Protocol):
    """The window is exact: no ``window``-long span admits more than ``rpm`` requests or more than
    ``tpm`` tokens (estimated at ``acquire``, corrected by ``record``). ``acquire`` waits until
    the window has room if ``wait_until`` allows it, else answers ``False`` at once (fail over)."""

    window: float

    async def acquire(
        self, provider: Provider, tokens: int = 0, *, wait_until: float | None = None, key: str | None = None
    ) -> bool:
        """Take one request and ``tokens`` from ``provider``'s window. ``wait_until`` is an
        event-loop time (``loop.time()``, the clock of ``asyncio.timeout_at``): wait up to then
        for room; ``None``: do not wait. ``key`` names the window (default: the provider's
        name; the engine adds its endpoint's identity, so deployments with another endpoint or
        key never share a quota)."""
        ...

    async def record(
        self, provider: Provider, actual_tokens: int, estimated_tokens: int, *, key: str | None = None
    ) -> None:
        """Correct the token count of an admitted request by ``actual - estimated`` (a shared
        backend may gather corrections and send them shortly after: ``flush`` sends them now)."""
        ...

    async def flush(self) -> None:
        """Send the corrections ``record`` gathered (nothing to do in process)."""
        ...


CircuitState = Literal["closed", "opened", "half-opened"]


@dataclass(frozen=True, slots=True)
class CircuitSnapshot:
    """One circuit as a shared store holds it, its times on this process's clock (``time.time()``).
    ``state`` is purgatory's name (``closed``, ``opened``, ``half-opened``); ``probe_until``: a
    half-open circuit's probe belongs to one instance until then."""

    state: CircuitState
    failures: int = 0
    opened_at: float | None = None
    probe_until: float | None = None
    granted: bool = False  # a claim: this instance holds the half-open probe


CLOSED_SNAPSHOT = CircuitSnapshot("closed")


class SharedCircuits(Protocol):
    """Circuits shared by every instance on a backend: the transitions, each one atomic on the
    backend (so exactly one instance claims a half-open probe); every answer is the circuit as it
    then is. ``None``: the backend failed or is skipped (the caller keeps its own view).
    ``staleness``: how old an instance's view of the others' changes may grow."""

    staleness: float

    async def read(self, keys: list[str], seen: str = "") -> tuple[str, dict[str, CircuitSnapshot]] | None:
        """The version of the shared circuits, and the circuits named (closed when the backend
        has none) unless the version is still ``seen`` (then ``{}``)."""
        ...

    async def failed(self, key: str, threshold: int, ttl: float) -> CircuitSnapshot | None:
        """Count a failed try; the ``threshold``-th in a row opens the circuit."""
        ...

    async def succeeded(self, key: str) -> CircuitSnapshot | None:
        """A try succeeded on a closed circuit: the count of failures starts again."""
        ...

    async def claim(self, key: str, token: str, ttl: float, lease: float) -> CircuitSnapshot | None:
        """Claim the probe of a circuit open for ``ttl`` seconds (``granted``: ours for ``lease``)."""
        ...

    async def settle(self, key: str, token: str, ok: bool, ttl: float) -> CircuitSnapshot | None:
        """The probe's outcome: closed for all, or open again."""
        ...


class Backend(Protocol):
    """One place shared state lives. ``remote``: shared with other instances (its operations
    yield to the loop and may fail; the guard makes them fail soft)."""

    @property
    def name(self) -> str: ...

    @property
    def remote(self) -> bool: ...

    @property
    def limiter(self) -> RateLimiter: ...

    @property
    def flights(self) -> Flights: ...

    def store(self, namespace: str) -> Store:
        """A store for one kind of value (``resp``: responses, ``models``: listings)."""
        ...

    def circuits(self) -> SharedCircuits | None:
        """The circuits shared with other instances (``None``: each instance keeps its own)."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StateWarning:
    """A shared backend went away (``degraded``) or came back (``recovered``). ``error`` is the
    exception's type and message; Redis errors name host and port, never a password."""

    event: Literal["degraded", "recovered"]
    operation: str  # e.g. "cache.get", "limits.acquire", "flight.lock"
    error: str = ""

    def __str__(self) -> str:
        tail = f": {self.error}" if self.error else ""
        return f"shared state {self.event} during {self.operation}{tail}"


Warn = Callable[[StateWarning], None]


class Guard:
    """Runs backend operations with a timeout; on failure returns the default, reports once and
    skips the backend for ``cooldown`` seconds, after which a single caller probes it again.

    So a shared backend that fails (Redis down, slow, wrong password) never fails a request: the
    operation answers its default (a miss), and one ``StateWarning`` tells of the outage.
    """

    __slots__ = ("_down_until", "_scrubber", "cooldown", "degraded", "failures", "on_warning", "timeout")

    def __init__(
        self,
        on_warning: Warn | None = None,
        *,
        timeout: float = 0.25,
        cooldown: float = 2.0,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.on_warning = on_warning
        self._scrubber = scrubber
        self.timeout = timeout
        self.cooldown = cooldown
        self.degraded = False
        self.failures = 0
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while cooling down after a failure (and no network is tried)."""
        return not self.degraded or time.monotonic() >= self._down_until

    async def run(self, operation: str, fn: Callable[[], Awaitable[T]], default: D) -> T | D:
        if self.degraded:
            now = time.monotonic()
            if now < self._down_until:
                return default
            self._down_until = now + self.cooldown  # this caller probes; the others keep skipping
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn()
        except Exception as exc:
            self._fail(operation, exc)
            return default
        if self.degraded:
            self.degraded = False
            self._emit(StateWarning("recovered", operation))
        return result

    def _fail(self, operation: str, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = time.monotonic() + self.cooldown
        if not self.degraded:
            self.degraded = True
            detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "")
            self._emit(StateWarning("degraded", operation, self.scrub(f"{type(exc).__name__}: {detail}")))

    def scrub(self, text: str) -> str:
        """``text`` with the backend's secrets masked (host and password of a URL read from the
        environment), cut to 300 characters."""
        return self._scrubber.scrub(text) if self._scrubber is not None else text[:300]

    def _emit(self, warning: StateWarning) -> None:
        if self.on_warning is None:
            _log.warning("%s", warning)
            return
        try:
            self.on_warning(warning)
        except Exception:  # a broken listener must not fail a request
            _log.exception("state warning listener failed")
