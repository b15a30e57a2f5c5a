"""A graph's targets and one request's state: endpoints precomputed per target (connection,
template, classifier, circuit, price), the per-request context with its attempts and budget, and
the outcomes a try reports (``Win``, a ``Failure``, or ``FAILED`` / ``SKIPPED``)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from engine.graph import Price, Provider, Route, Target
from engine.providers.base import Parsed
from engine.result import Attempt, ErrorKind, Response
from engine.runtime.breakers import Circuits, Token
from engine.runtime.events import Hooks
from engine.runtime.state import CachePolicy, State
from engine.runtime.strategies import Latencies
from engine.runtime.transport import Connection, ConnectionPool
from engine.telemetry import NULL, Recorder, Telemetry
from engine.telemetry.health import HealthTracker

__all__ = [
    "FAILED",
    "HEDGE_LOST",
    "SKIPPED",
    "Answer",
    "Ctx",
    "Endpoint",
    "Exchange",
    "Failure",
    "Hit",
    "Miss",
    "Shared",
    "Try",
    "Win",
    "perf",
]

HEDGE_LOST: Final = "hedge lost"  # cancel message for hedge losers

perf = time.perf_counter
A = TypeVar("A", bound="Answer")


class Shared:
    """Engine-wide state that outlives a graph: connections, circuits, hooks, observations (the
    health tracker, which ``least_latency``'s ``latencies`` read too), telemetry, and the shared
    state (response cache, single-flight, rate limiter: ``runtime.state.State``)."""

    __slots__ = (
        "circuits",
        "health",
        "hooks",
        "latencies",
        "pool",
        "rng",
        "state",
        "stragglers",
        "telemetry",
    )

    def __init__(
        self,
        pool: ConnectionPool,
        circuits: Circuits,
        hooks: Hooks,
        rng: random.Random,
        state: State,
        telemetry: Telemetry,
    ) -> None:
        self.pool = pool
        self.circuits = circuits
        self.hooks = hooks
        self.rng = rng
        self.state = state
        self.telemetry = telemetry
        self.health: HealthTracker = telemetry.windows
        self.latencies = Latencies(self.health)
        self.stragglers: set[asyncio.Task[Any]] = set()  # cancelled hedges still unwinding

    def with_state(self, state: State, circuits: Circuits) -> Shared:
        """The same connections, hooks and observations over another state backend (a reload
        that changed ``cache.backend``); graphs already running keep this one."""
        other = Shared(self.pool, circuits, self.hooks, self.rng, state, self.telemetry)
        other.latencies, other.stragglers = self.latencies, self.stragglers
        return other


class Miss:
    """A target or group that produced no answer: ``FAILED`` (tried) or ``SKIPPED`` (circuit open,
    no network cost)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


FAILED: Final = Miss("FAILED")
SKIPPED: Final = Miss("SKIPPED")


class Answer:
    """What a target produced: a ``Win`` (a whole answer) or, streaming, a stream that has
    yielded its first event. Hedging may produce two; the one not used is ``discard``ed."""

    __slots__ = ()

    def discard(self, ctx: Ctx) -> None:
        raise NotImplementedError


class Win(Answer):
    """An answered try, before the route wraps it into a ``Response``."""

    __slots__ = ("attempt", "data", "ep", "model", "parsed")

    def __init__(self, ep: Endpoint, model: str, parsed: Parsed, data: Any, attempt: Attempt) -> None:
        self.ep = ep
        self.model = model
        self.parsed = parsed
        self.data = data
        self.attempt = attempt

    def discard(self, ctx: Ctx) -> None:
        """Lost a hedge race it finished at the same time: recorded as cancelled, not as a second
        answer."""
        _cancel(ctx, self.attempt)


class Hit(Answer):
    """An answer that cost no try: from the response cache, or shared by an identical request
    in flight. ``response`` has no attempts and no raw body; the route fills in its own."""

    __slots__ = ("attempt", "ep", "response")

    def __init__(self, ep: Endpoint, response: Response, attempt: Attempt) -> None:
        self.ep = ep
        self.response = response
        self.attempt = attempt

    def discard(self, ctx: Ctx) -> None:
        _cancel(ctx, self.attempt)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed try as its exchange saw it: the status (``None`` when no answer came), the error
    kind (``None`` for a plain HTTP status), the provider's detail and its Retry-After."""

    status: int | None
    error: ErrorKind | None
    detail: str
    retry_after: float | None = None


# one try's send (endpoint, context, model, body, try): an answer (routed: a ``Win``; streamed:
# a stream past its first event), or a ``Failure``
Exchange = Callable[["Endpoint", "Ctx", str, bytes, "Try"], Awaitable[A | Failure]]


def _cancel(ctx: Ctx, a: Attempt) -> None:
    for i, seen in enumerate(ctx.attempts):
        if seen is a:
            ctx.attempts[i] = Attempt(
                a.target, "cancelled", a.status, "hedge lost (answered late)", a.latency
            )
            return


class Endpoint:
    """One target, precomputed: its connection, template, classifier, circuit and price."""

    __slots__ = (
        "backoff",
        "breaker",
        "circuit",
        "classifier",
        "conn",
        "context",
        "fold",
        "honor",
        "key",
        "kind",
        "limit_key",
        "limited",
        "model",
        "models",
        "price",
        "provider",
        "render",
        "renders",
        "scope",
        "speed",
        "tpm",
        "tries",
    )

    def __init__(self, target: Target, conn: Connection, renders: tuple[int, str]) -> None:
        p = target.provider
        self.renders = renders  # (template, kind): endpoints sharing it render equal bodies
        self.key = target.key
        self.provider = p.name
        self.conn = conn
        self.kind = conn.kind
        # the kind's context, bound to the model's wire options when routes.yaml wrote some
        self.context = self.kind.context_for(p.wire_for) if p.custom_wire else self.kind.context
        self.render = p.template.render
        self.model = target.model
        self.classifier = p.retry
        self.honor = p.retry.honor_retry_after
        self.speed = p.speed
        self.backoff = p.speed.backoff
        self.tries = p.speed.retries + 1
        self.breaker = p.breaker
        by_model = p.breaker is not None and p.breaker.scope == "model"
        # circuit: a fixed name, or None with a breaker by model and a pass-through target
        # (one circuit per client-chosen model, bounded: past a number of them, ``fold``)
        self.circuit: str | None = None
        if p.breaker is not None and not (by_model and target.model is None):
            self.circuit = target.key if by_model else p.name
        self.fold = f"{p.name}/*" if self.circuit is None else None
        self.scope = conn.identity[:16]  # circuits and rate limits are per endpoint identity
        self.price: Price | None = target.price(target.model) if target.model else None
        self.models = p.models  # this graph's (a reused connection may hold an older provider)
        # the provider when it has client-side rate limits (the limiter's key), else None
        self.limited: Provider | None = p if p.limits is not None else None
        self.limit_key = f"{p.name}@{self.scope}"
        self.tpm = p.limits is not None and p.limits.tpm is not None

    def circuit_for(self, model: str) -> str | None:
        if self.breaker is None:
            return None
        return self.circuit or f"{self.provider}/{model}"

    def label(self, model: str) -> str:
        return self.key if self.model is not None else f"{self.provider}/{model}"

    def price_for(self, model: str) -> Price | None:
        if self.model is not None:
            return self.price
        info = self.models.get(model)
        return info.price if info is not None else None

    def body(self, ctx: Ctx, model: str, stream: bool) -> bytes:
        """The request body for ``model``; a failover to a target with the same template, kind
        and model (the same model at another provider) reuses the body already rendered."""
        last = ctx.body
        if last is not None and last[0] is self.renders and last[1] == model:
            return last[2]
        body = self.render(**self.context(ctx.request, model, stream)).encode()
        ctx.body = (self.renders, model, body)
        return body


class Ctx:
    """One request's state: what was asked, the budget, and every attempt so far."""

    __slots__ = (
        "attempts",
        "body",
        "cache",
        "deadline",
        "exchange",
        "live",
        "loop",
        "model",
        "rec",
        "request",
        "route",
        "seen",
        "start",
        "stream",
        "tokens",
    )

    def __init__(
        self,
        request: dict[str, Any],
        model: str,
        route: Route,
        loop: asyncio.AbstractEventLoop,
        exchange: Exchange[Answer],
        stream: bool = False,
    ) -> None:
        self.request = request
        self.exchange = exchange  # routed: a whole answer; streamed: up to the first event
        self.stream = stream
        self.model = model
        self.route = route
        self.loop = loop
        self.attempts: list[Attempt] = []
        self.start = perf()
        self.deadline = loop.time() + route.deadline
        self.seen: set[str] = set()
        # tries on the wire in hedge tasks: task -> (target, start); None when not hedging
        self.live: dict[asyncio.Task[Any], tuple[str, float]] | None = None
        self.body: tuple[tuple[int, str], str, bytes] | None = None  # the last body rendered
        self.cache: CachePolicy = "off"  # the response cache for this request: off, use, refresh
        self.tokens = -1  # the rate limiter's token estimate, made on the first limited try
        self.rec: Recorder = NULL  # the request's telemetry recorder

    def where(self) -> str:
        return f"route {self.route.index} ({self.route.match.describe()})"

    def why_cancelled(self, exc: BaseException) -> Literal["cancelled", "deadline"]:
        """A cancelled try's outcome: ``deadline`` only when the route's deadline has passed; a
        lost hedge, a caller's cancellation or a closed stream is ``cancelled``."""
        if HEDGE_LOST in exc.args or self.loop.time() < self.deadline:
            return "cancelled"
        return "deadline"


class Try:
    """One try on the wire. While hedging it is registered in ``ctx.live`` so that the winner's
    side can record it cancelled; ``off`` takes it off the wire (once)."""

    __slots__ = ("label", "live", "me", "n", "start", "status", "token", "wire")

    def __init__(self, ctx: Ctx, label: str, n: int = 0, token: Token | None = None) -> None:
        self.label = label
        self.n = n
        self.token = token
        self.status: int | None = None  # the answer's status, once known
        self.wire = True
        self.start = start = perf()
        live = self.live = ctx.live
        me = self.me = asyncio.current_task() if live is not None else None
        if live is not None and me is not None:
            live[me] = (label, start)

    def off(self) -> bool:
        """Off the wire: ``True`` the first time, unless a winning hedge recorded it already."""
        if not self.wire:
            return False
        self.wire = False
        live = self.live
        return live is None or live.pop(self.me, None) is not None  # type: ignore[arg-type]
