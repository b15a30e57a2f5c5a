"""One try's life, the same for ``route()`` and ``stream()``: it starts (circuit, rate limit, the
``attempt_start`` event), goes on the wire through an exchange, and then succeeds (``settle``:
circuit, token settlement, tally, the ``ok`` attempt) or fails (``failed``: scrub, circuit, tally,
then retry, fail over or stop; ``broke`` for a stream past its first event). Every attempt is
recorded, and every try event fired, here: the one place metrics and spans hook in.

It also builds what a request ends with: the ``Response`` of a routed answer and the ``Done`` of
a stream, priced the same way.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal, TypeVar

from engine.context_window import said_too_long
from engine.errors import ProviderError
from engine.providers.base import Parsed, StreamParser
from engine.result import Attempt, Done, ErrorKind, Response, Usage, reasoning_text
from engine.runtime.breakers import Token
from engine.runtime.context import (
    FAILED,
    SKIPPED,
    Answer,
    Ctx,
    Endpoint,
    Exchange,
    Failure,
    Miss,
    Shared,
    Try,
    perf,
)
from engine.runtime.events import AttemptEnded, AttemptStarted, FailingOver, Retrying
from engine.runtime.retry import breaker_failure, can_fail_over, can_retry, retry_delay
from engine.runtime.state import estimate_tokens
from engine.runtime.transport import Closed

__all__ = ["Exchange", "Failure", "Lifecycle", "done_of", "response_of"]

A = TypeVar("A", bound=Answer)
_WAITED: Final = 0.001  # a rate-limit admission that took longer waited for room


class Lifecycle:
    """The tries of one runtime: every outcome recorded and every try event fired here."""

    __slots__ = ("circuits", "health", "hooks", "shared", "state")

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.hooks = shared.hooks
        self.circuits = shared.circuits
        self.state = shared.state
        self.health = shared.health

    def record(self, ctx: Ctx, attempt: Attempt) -> None:
        ctx.attempts.append(attempt)
        ctx.rec.try_ended(attempt)
        if self.hooks.attempt_end:
            self.hooks.fire(self.hooks.attempt_end, AttemptEnded(attempt, perf()))

    # -- start ----------------------------------------------------------------------------------

    async def tries(
        self, ep: Endpoint, ctx: Ctx, model: str, label: str, body: bytes, wait: bool, exchange: Exchange[A]
    ) -> A | Miss:
        """Try one target up to its tries: enter its circuit (skip it while open), take its rate
        limit, then ``exchange`` (an answer, or a ``Failure`` for ``failed`` to classify); a try
        cancelled on the wire is recorded (unless a winning hedge recorded it already)."""
        circuit = ep.circuit_for(model)
        hooks = self.hooks
        for n in range(1, ep.tries + 1):
            token = None
            if circuit is not None:
                token = await self.circuits.enter(
                    circuit,
                    ep.breaker,  # type: ignore[arg-type]
                    ep.scope,
                    ep.fold,
                )
                if token is None:
                    self.skip(ctx, ep, label, "circuit_open")
                    return SKIPPED if n == 1 else FAILED
            if ep.limited is not None and not await self.admit(ep, ctx, wait, label):
                return SKIPPED if n == 1 else FAILED
            if hooks.attempt_start:
                hooks.fire(hooks.attempt_start, AttemptStarted(label, n, perf()))
            t = Try(ctx, label, n, token)
            try:
                result = await exchange(ep, ctx, model, body, t)
            except asyncio.CancelledError as exc:
                self.cancelled(ctx, t, exc)
                raise
            except Closed:
                self.closed(ctx, t)
                raise
            finally:
                t.off()
            if type(result) is not Failure:
                return result  # type: ignore[return-value]
            if ep.conn.closed:  # failed because the engine closed under it: not the provider's
                self.closed(ctx, t)
                raise Closed(ep.conn.name)
            if not await self.failed(ep, ctx, t, result):
                return FAILED
        raise AssertionError("unreachable: the last try always returns or raises")

    async def admit(self, ep: Endpoint, ctx: Ctx, wait: bool, label: str) -> bool:
        """Take one request (and the request's estimated tokens) from the target's rate limit,
        waiting for room until the deadline when ``wait``; on refusal record a skipped try."""
        if ctx.tokens < 0:
            ctx.tokens = estimate_tokens(ctx.request)
        assert ep.limited is not None
        start = perf()
        admitted = await self.state.limiter.acquire(
            ep.limited, ctx.tokens, key=ep.limit_key, wait_until=ctx.deadline if wait else None
        )
        if wait and (waited := perf() - start) >= _WAITED:
            ctx.rec.waited(waited, target=label)
        if admitted:
            return True
        self.skip(ctx, ep, label, "rate_limited")
        return False

    def skip(self, ctx: Ctx, ep: Endpoint, label: str, kind: ErrorKind) -> None:
        """A target passed over at no network cost (open circuit, rate limit used up)."""
        self.health.skipped("t:" + label)
        self.health.skipped("p:" + ep.provider)
        self.record(ctx, Attempt(label, "skipped", kind=kind))

    # -- success --------------------------------------------------------------------------------

    async def settle(
        self,
        ep: Endpoint,
        ctx: Ctx,
        label: str,
        token: Token | None,
        status: int | None,
        start: float,
        usage: Usage,
    ) -> Attempt:
        """An answered try (a whole answer, or a stream read to its end): the circuit hears of
        the success, the rate limiter of the tokens really used; the ``ok`` attempt."""
        latency = perf() - start
        if token is not None:
            await self.circuits.leave(token, False)
        if ep.tpm:
            await self.settle_tokens(ep, ctx, usage.total_tokens)
        self.health.record("t:" + label, True, latency)
        self.health.record("p:" + ep.provider, True, latency)
        attempt = Attempt(label, "ok", status, None, latency)
        self.record(ctx, attempt)
        return attempt

    async def settle_tokens(self, ep: Endpoint, ctx: Ctx, actual: int) -> None:
        """Correct the rate limiter's token count with what the answer reported (a shared limiter
        gathers the corrections and sends them after the answer: no round trip here)."""
        assert ep.limited is not None
        await self.state.limiter.record(ep.limited, actual, ctx.tokens, key=ep.limit_key)

    # -- failure --------------------------------------------------------------------------------

    async def failed(self, ep: Endpoint, ctx: Ctx, t: Try, failure: Failure) -> bool:
        """Record failed try ``t``: ``True`` after sleeping the backoff (retry the same target),
        ``False`` to fail over; raise ``ProviderError`` when the classifier allows neither.
        The detail is masked of the provider's secrets, then cut short."""
        status, error, retry_after = failure.status, failure.error, failure.retry_after
        if error is None and said_too_long(status, failure.detail):
            error = "context"  # the provider's own "context length exceeded"
        latency = perf() - t.start
        counts = breaker_failure(status, error)
        detail = await self._charge(ep, t.token, t.label, counts, failure.detail, latency)
        kind: ErrorKind = error if error is not None else "status"
        classifier = ep.classifier
        if t.n < ep.tries and can_retry(classifier, status, error):
            wait = retry_delay(ep.backoff, t.n, self.shared.rng.random(), retry_after if ep.honor else None)
            if ctx.loop.time() + wait < ctx.deadline:  # never sleep past the deadline
                attempt = Attempt(t.label, "retry", status, None, latency, retry_after, kind, detail)
                self.record(ctx, attempt)
                if self.hooks.retry:
                    self.hooks.fire(self.hooks.retry, Retrying(t.label, t.n + 1, wait, attempt, perf()))
                ctx.rec.waited(wait)
                await asyncio.sleep(wait)
                return True
        over = can_fail_over(classifier, status, error)
        outcome: Literal["failover", "fatal"] = "failover" if over else "fatal"
        attempt = Attempt(t.label, outcome, status, None, latency, retry_after, kind, detail)
        self.record(ctx, attempt)
        if over:
            if self.hooks.failover:
                self.hooks.fire(self.hooks.failover, FailingOver(t.label, attempt, perf()))
            return False
        raise ProviderError(
            f"{t.label} answered {status if status is not None else error}, which "
            f"{classifier.name!r} neither retries nor fails over",
            ctx.attempts,
            status=status,
            body=detail,
            route=ctx.where(),
        )

    async def broke(
        self,
        ep: Endpoint,
        ctx: Ctx,
        label: str,
        token: Token | None,
        status: int | None,
        start: float,
        error: ErrorKind,
        detail: str,
    ) -> str:
        """A stream that broke after its first event (no failover then): record the fatal try;
        returns its text (``kind: detail``). A stream the engine's close cut is not the
        provider's fault."""
        if ep.conn.closed:
            error, detail = "closed", "the engine was closed"
        latency = perf() - start
        counts = error != "closed" and breaker_failure(None, error)
        detail = await self._charge(ep, token, label, counts, detail, latency)
        text = f"{error}: {detail}"
        self.record(ctx, Attempt(label, "fatal", status, text, latency, kind=error, detail=detail))
        return text

    async def _charge(
        self, ep: Endpoint, token: Token | None, label: str, counts: bool, detail: str, latency: float
    ) -> str:
        """A failed try's cost to its target: the circuit (``counts``: the failure counts against
        it) and the health windows; returns the detail masked of the provider's secrets."""
        if token is not None:
            await self.circuits.leave(token, counts)
        self.health.record("t:" + label, False, latency)
        self.health.record("p:" + ep.provider, False, latency)
        return ep.conn.scrub(detail)

    # -- cut short ------------------------------------------------------------------------------

    def cancelled(self, ctx: Ctx, t: Try, exc: BaseException) -> None:
        """Record a try cancelled on the wire (a hedge that lost was recorded by the winner's
        side already)."""
        if t.off():
            self.cut(ctx, t.label, t.status, t.start, exc)

    def cut(self, ctx: Ctx, label: str, status: int | None, start: float, exc: BaseException) -> None:
        """Record a try cancelled (or, past the deadline, timed out) while it ran."""
        why = ctx.why_cancelled(exc)
        self.record(ctx, Attempt(label, why, status, latency=perf() - start, kind=why))

    def closed(self, ctx: Ctx, t: Try) -> None:
        """Record a try the engine's ``aclose()`` cut short (nothing counts against a circuit;
        the route ends with ``AllTargetsFailed`` saying so)."""
        self.record(ctx, Attempt(t.label, "cancelled", t.status, latency=perf() - t.start, kind="closed"))


# -- what a request ends with ------------------------------------------------------------------


def cost_of(ep: Endpoint, model: str, usage: Usage) -> float | None:
    """The answer's price in USD from routes.yaml's prices, ``None`` when the model has none."""
    price = ep.price_for(model)
    return price.cost(usage) if price else None


def response_of(
    ep: Endpoint,
    model: str,
    parsed: Parsed,
    attempts: tuple[Attempt, ...] = (),
    latency: float = 0.0,
    raw: object = None,
    cached: bool = False,
) -> Response:
    """The ``Response`` of a routed answer (without attempts and raw body: as cached)."""
    usage = parsed.usage
    return Response(
        text=parsed.text,
        provider=ep.provider,
        model=model,
        finish_reason=parsed.finish_reason,
        tool_calls=parsed.tool_calls,
        usage=usage,
        cost=cost_of(ep, model, usage),
        cached=cached,
        latency=latency,
        attempts=attempts,
        raw=raw,
        reasoning=reasoning_text(parsed.reasoning),
        reasoning_blocks=parsed.reasoning,
        native=parsed.native,
    )


def done_of(
    ep: Endpoint, model: str, parser: StreamParser, attempts: tuple[Attempt, ...], latency: float, ttft: float
) -> Done:
    """The ``Done`` that ends a stream read to its end."""
    usage, thoughts = parser.usage, parser.reasoning
    return Done(
        provider=ep.provider,
        model=model,
        finish_reason=parser.finish_reason,
        usage=usage,
        cost=cost_of(ep, model, usage),
        attempts=attempts,
        latency=latency,
        ttft=ttft,
        reasoning=reasoning_text(thoughts),
        reasoning_blocks=thoughts,
    )
