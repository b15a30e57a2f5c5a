"""A routing graph and a normalised request in, a ``Response`` (or a typed ``RouteError`` listing
every attempt) out: tries with retries and backoff, failover strategies, hedging, circuit breakers,
client-side rate limits, the response cache and single-flight, all inside the route's deadline.

Everything that depends only on the graph (URLs, headers, prices, circuit names, group orders) is
built once per graph in ``Runtime``; a request allocates one small context object and its attempts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from engine.errors import AllTargetsFailed, DeadlineExceeded, NoRouteError, ProviderError
from engine.graph import Group, Node, Route, RoutingGraph, Target
from engine.providers import get_kind
from engine.providers.base import WireError, loads
from engine.result import Attempt, ErrorKind, Response, reasoning_text
from engine.runtime.backends import Fault, error_detail
from engine.runtime.breakers import Token
from engine.runtime.context import (
    FAILED,
    HEDGE_LOST,
    SKIPPED,
    Answer,
    Ctx,
    Endpoint,
    Hit,
    Miss,
    Shared,
    Try,
    Win,
    perf,
)
from engine.runtime.events import AttemptEnded, AttemptStarted, FailingOver, Retrying
from engine.runtime.retry import (
    breaker_failure,
    can_fail_over,
    can_retry,
    parse_retry_after,
    retry_delay,
)
from engine.runtime.state import estimate_tokens
from engine.runtime.strategies import GroupOrder
from engine.runtime.transport import Closed, Connection
from engine.values import format_duration

__all__ = ["Exchange", "Failure", "Runtime", "closed_error"]

# a failed try: (status, error, detail, retry_after), as ``Runtime.failed`` classifies it
Failure = tuple[int | None, ErrorKind | None, str, float | None]
A = TypeVar("A", bound=Answer)
# one try's send (endpoint, context, model, body, try): an answer, or a failure
Exchange = Callable[[Endpoint, Ctx, str, bytes, Try], Awaitable[A | Failure]]


class Runtime:
    """A graph made executable. Requests in flight keep the runtime they started on; ``inflight``
    and ``retired`` let the engine close connections a reloaded graph no longer uses."""

    def __init__(self, graph: RoutingGraph, shared: Shared) -> None:
        self.graph = graph
        self.shared = shared
        self.hooks = shared.hooks
        self.circuits = shared.circuits
        self.state = shared.state
        self.caching = graph.cache.responses_ttl is not None
        self.inflight = 0
        self.retired = False
        self.connections: list[Connection] = []
        self.by_provider: dict[str, Connection] = {}
        by_provider = self.by_provider
        for name, provider in graph.providers.items():
            conn = shared.pool.acquire(provider, get_kind(provider.kind))
            by_provider[name] = conn
            self.connections.append(conn)
        self.endpoints: dict[int, Endpoint] = {}
        by_key: dict[str, Endpoint] = {}
        renders: dict[tuple[int, str], tuple[int, str]] = {}
        for target in _all_targets(graph):
            ep = by_key.get(target.key)
            if ep is None:
                p = target.provider
                # wire options make a provider's bodies its own
                rk = (id(p.template), f"{p.kind}@{p.name}" if p.custom_wire else p.kind)
                ep = by_key[target.key] = Endpoint(target, by_provider[p.name],
                                                   renders.setdefault(rk, rk))
            self.endpoints[id(target)] = ep
        self.orders: dict[str, GroupOrder] = {
            name: GroupOrder(group, shared.rng, shared.latencies)
            for name, group in graph.groups.items()
        }

    # -- entry ----------------------------------------------------------------------------------

    def match(self, request: dict[str, Any]) -> tuple[str, Route]:
        model = request["model"]
        route = self.graph.match(model, request.get("metadata") or _EMPTY)
        if route is None:
            raise NoRouteError(f"no route matches model {model!r}")
        return model, route

    async def route(self, request: dict[str, Any]) -> Response:
        model, route = self.match(request)
        ctx = Ctx(request, model, route, asyncio.get_running_loop(), self.attempt)
        if self.caching:
            ctx.cache = self.state.cache_policy(request)
        try:
            async with asyncio.timeout_at(ctx.deadline):
                result = await self.run(route.to, ctx)
        except TimeoutError:
            raise DeadlineExceeded(
                f"deadline {format_duration(route.deadline)} exceeded on {ctx.where()}",
                ctx.attempts, route=ctx.where()) from None
        except Closed:
            raise closed_error(ctx) from None
        if not isinstance(result, Win):
            if isinstance(result, Hit):  # nothing was spent on this answer: cost 0
                return dataclasses.replace(result.response, provider=result.ep.provider,
                                           cached=True, cost=0.0,
                                           latency=perf() - ctx.start,
                                           attempts=tuple(ctx.attempts))
            raise AllTargetsFailed(f"every target failed on {ctx.where()}", ctx.attempts,
                                   route=ctx.where())
        ep, parsed, name = result.ep, result.parsed, result.model
        usage = parsed.usage
        price = ep.price_for(name)
        return Response(
            text=parsed.text, provider=ep.provider, model=name,
            finish_reason=parsed.finish_reason, tool_calls=parsed.tool_calls, usage=usage,
            cost=price.cost(usage) if price else None,
            latency=perf() - ctx.start, attempts=tuple(ctx.attempts), raw=result.data,
            reasoning=reasoning_text(parsed.reasoning), reasoning_blocks=parsed.reasoning,
        )

    # -- graph walk -----------------------------------------------------------------------------

    async def run(self, node: Node, ctx: Ctx, wait: bool = True) -> Answer | Miss:
        """Try ``node`` (a target, or a group by its strategy) until it answers or gives up.
        ``wait``: nothing is left to fail over to after ``node`` (the route's last resort), so
        a used-up rate limit waits for room, within the deadline, instead of skipping."""
        if isinstance(node, Target):
            return await ctx.try_target(self.endpoints[id(node)], ctx, wait)
        if node.hedge_after is not None and self.orders[node.name].races:
            return await self._hedged(node, ctx, wait)
        return await self._group(node, ctx, wait)

    async def _group(self, group: Group, ctx: Ctx, wait: bool) -> Answer | Miss:
        order = self.orders[group.name]
        timed = order.timed
        busy = self.shared.latencies if order.counts_busy else None
        members = group.members
        limit_wait = group.on_limit == "wait"
        tried = 0
        skipped_only = True
        indexes = order.order(ctx.model, ctx.request)
        last = len(indexes) - 1
        for k, i in enumerate(indexes):
            if tried >= group.max_attempts:
                break
            node = members[i].node
            final = wait and (k == last or tried + 1 >= group.max_attempts)
            if isinstance(node, Target):
                if self.endpoints[id(node)].key in ctx.seen:
                    continue  # reached already through another group of this route
                final = final or limit_wait
            start = perf() if timed else 0.0
            if busy is None:
                result = await self.run(node, ctx, final)
            else:
                busy.enter(order.key(i))
                try:
                    result = await self.run(node, ctx, final)
                finally:
                    busy.leave(order.key(i))
            if timed and result is not SKIPPED:
                self.shared.latencies.observe(order.key(i), perf() - start,
                                              isinstance(result, Answer))
            if isinstance(result, Answer):
                return result
            if result is FAILED:
                tried += 1
                skipped_only = False
                if isinstance(node, Group) and self.hooks.failover:
                    self.hooks.fire(self.hooks.failover, FailingOver(node.name, None, perf()))
        return SKIPPED if skipped_only else FAILED

    async def _hedged(self, group: Group, ctx: Ctx, wait: bool) -> Answer | Miss:
        """Start the first member; start the next whenever ``hedge_after`` passes without an answer
        or a running member fails; the first answer wins and the others are cancelled."""
        members = group.members
        limit_wait = group.on_limit == "wait"
        hedge_after = group.hedge_after
        pending: set[asyncio.Task[Answer | Miss]] = set()
        next_i = 0
        launched = 0
        failed = False

        def launch() -> None:
            nonlocal next_i, launched
            while next_i < len(members):
                node = members[next_i].node
                next_i += 1
                final = wait and (next_i == len(members) or launched + 1 >= group.max_attempts)
                if isinstance(node, Target):
                    if self.endpoints[id(node)].key in ctx.seen:
                        continue
                    final = final or limit_wait
                pending.add(asyncio.ensure_future(self.run(node, ctx, final)))
                launched += 1
                return

        def more() -> bool:
            return launched < group.max_attempts and next_i < len(members)

        if ctx.live is None:
            ctx.live = {}
        cancel_reason: str | None = HEDGE_LOST
        try:
            launch()
            while pending:
                done, _ = await asyncio.wait(pending, timeout=hedge_after if more() else None,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    launch()
                    continue
                pending -= done
                results = [t.result() for t in done if t.exception() is None]
                wins = [r for r in results if isinstance(r, Answer)]
                if wins:
                    for late in wins[1:]:  # answered in the same instant: one answer is used
                        late.discard(ctx)
                    return wins[0]
                for task in done:
                    error = task.exception()
                    if error is not None:
                        raise error  # a ProviderError: the route stops
                for result in results:
                    if result is SKIPPED:
                        launched -= 1  # an open circuit costs nothing and does not count
                    else:
                        failed = True
                    if more():
                        launch()
            return FAILED if failed else SKIPPED
        except asyncio.CancelledError as exc:
            cancel_reason = HEDGE_LOST if HEDGE_LOST in exc.args else None  # deadline (or caller)
            raise
        finally:
            if pending:
                self._stop_hedges(ctx, pending, cancel_reason)
                if cancel_reason is None:  # cut by the deadline: let each record its own try
                    await asyncio.wait(pending)

    def _stop_hedges(self, ctx: Ctx, tasks: set[asyncio.Task[Answer | Miss]],
                     reason: str | None) -> None:
        """Cancel the hedges still running. When an answer won, their tries are recorded as
        cancelled here and now, and the route returns without waiting for them to unwind (their
        connections are closed as the cancellation reaches them, within a loop iteration)."""
        live = ctx.live
        now = perf()
        for task in tasks:
            if task.done():  # finished before the cancel reached it: not an answer
                if not task.cancelled() and task.exception() is None:
                    answer = task.result()
                    if isinstance(answer, Answer):
                        answer.discard(ctx)
                continue
            task.cancel(reason)
            if reason is not None and live is not None:
                entry = live.pop(task, None)
                if entry is not None:
                    label, start = entry
                    self.record(ctx, Attempt(label, "cancelled", latency=now - start,
                                             kind="cancelled"))
            self.shared.stragglers.add(task)
            task.add_done_callback(self.shared.stragglers.discard)

    # -- one target -----------------------------------------------------------------------------

    async def attempt(self, ep: Endpoint, ctx: Ctx, wait: bool = True) -> Answer | Miss:
        """Try one target, retrying per its classifier (or answer from the response cache, or
        share an identical request in flight); ``FAILED`` means fail over, ``SKIPPED`` that the
        target was passed over at no network cost, and a non-failover error raises
        ``ProviderError``."""
        model = ep.model if ep.model is not None else ctx.model
        label = ep.label(model)
        ctx.seen.add(ep.key)
        try:
            body = ep.body(ctx, model, False)
        except Exception as exc:  # a template that cannot render this request: no network cost
            self.record(ctx, Attempt(label, "failover", kind="template", detail=str(exc)[:290]))
            return FAILED
        if ctx.cache != "off":
            return await self._shared(ep, ctx, model, label, body, wait)
        return await self.tries(ep, ctx, model, label, body, wait, self._post)

    async def _shared(self, ep: Endpoint, ctx: Ctx, model: str, label: str, body: bytes,
                      wait: bool) -> Answer | Miss:
        """A cacheable request: the cached answer, the answer of an identical request in flight
        (here or, with Redis, on another instance), or this request's own tries, whose answer
        is then cached. A caller that shared another's outcome records one attempt saying so."""
        ran = False  # this caller was the one to try (its tries are in its own attempts)
        mine: list[Win | Miss] = []  # what its tries produced

        async def call() -> Response:
            nonlocal ran
            ran = True
            result = await self.tries(ep, ctx, model, label, body, wait, self._post)
            mine.append(result)
            if not isinstance(result, Win):
                raise _NoAnswer(result, ctx.attempts[-1] if ctx.attempts else None)
            return answer_of(result)

        t = Try(ctx, label)  # a hedge waiting for a shared answer can be cancelled
        start = t.start
        try:
            response = await self.state.respond(f"{ep.conn.identity}\x00{model}", body, call,
                                                refresh=ctx.cache == "refresh",
                                                deadline=ctx.deadline)
        except _NoAnswer as exc:
            if mine:
                return mine[0]
            return self._shared_miss(ctx, label, exc, perf() - start)
        except ProviderError as exc:
            if ran:
                raise
            last = exc.attempts[-1] if exc.attempts else None
            self.record(ctx, Attempt(label, "fatal", exc.status, _shared_text(last),
                                     perf() - start, kind=last.kind if last else "status",
                                     detail=_shared_text(last)))
            raise ProviderError(str(exc.args[0]).split("\n", 1)[0], ctx.attempts,
                                status=exc.status, body=exc.body, route=ctx.where()) from None
        except asyncio.CancelledError as exc:
            if not ran:
                self.cancelled(ctx, t, exc)
            raise
        finally:
            t.off()
        if mine:
            return mine[0]  # we asked upstream: the answer as usual (with its raw body)
        attempt = Attempt(label, "cached" if response.cached else "coalesced", None, None,
                          perf() - start)
        self.record(ctx, attempt)
        return Hit(ep, response, attempt)

    def _shared_miss(self, ctx: Ctx, label: str, exc: _NoAnswer, waited: float) -> Miss:
        """The identical request we waited for got no answer: so do we, without trying again."""
        last = exc.last
        if exc.miss is SKIPPED:
            self.record(ctx, Attempt(label, "skipped", None, last.error if last else None,
                                     kind=last.kind if last else None,
                                     detail=last.detail if last else None))
            return SKIPPED
        self.record(ctx, Attempt(label, "failover", last.status if last else None,
                                 _shared_text(last), waited, kind=last.kind if last else None,
                                 detail=_shared_text(last)))
        return FAILED

    async def admit(self, ep: Endpoint, ctx: Ctx, wait: bool, token: Token | None,
                    label: str) -> bool:
        """Take one request (and the request's estimated tokens) from the target's rate limit,
        waiting for room until the deadline when ``wait``; on refusal record a skipped try."""
        if ctx.tokens < 0:
            ctx.tokens = estimate_tokens(ctx.request)
        assert ep.limited is not None
        if await self.state.limiter.acquire(ep.limited, ctx.tokens, key=ep.limit_key,
                                            wait_until=ctx.deadline if wait else None):
            return True
        self.record(ctx, Attempt(label, "skipped", kind="rate_limited"))
        return False

    async def settle_tokens(self, ep: Endpoint, ctx: Ctx, actual: int) -> None:
        """Correct the rate limiter's token count with what the answer reported. On Redis that
        is a round trip the answer need not wait for: it runs in the background (``aclose``
        waits for it)."""
        assert ep.limited is not None
        record = self.state.limiter.record(ep.limited, actual, ctx.tokens, key=ep.limit_key)
        if not self.state.remote:
            await record
            return
        task = asyncio.ensure_future(record)
        self.shared.stragglers.add(task)
        task.add_done_callback(self.shared.stragglers.discard)

    async def tries(self, ep: Endpoint, ctx: Ctx, model: str, label: str, body: bytes,
                    wait: bool, exchange: Exchange[A]) -> A | Miss:
        """Try one target up to its tries: enter its circuit (skip it while open), take its rate
        limit, then ``exchange`` (the send: an answer, or a failure for ``failed`` to classify);
        a try cancelled on the wire is recorded (unless a winning hedge recorded it already)."""
        circuit = ep.circuit_for(model)
        hooks = self.hooks
        for n in range(1, ep.tries + 1):
            token = None
            if circuit is not None:
                token = await self.circuits.enter(circuit, ep.breaker,  # type: ignore[arg-type]
                                                  ep.scope, ep.fold)
                if token is None:
                    self.record(ctx, Attempt(label, "skipped", kind="circuit_open"))
                    return SKIPPED if n == 1 else FAILED
            if ep.limited is not None and not await self.admit(ep, ctx, wait, token, label):
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
                self._closed(ctx, t)
                raise
            finally:
                t.off()
            if not isinstance(result, tuple):
                return result
            if ep.conn.closed:  # failed because the engine closed under it: not the provider's
                self._closed(ctx, t)
                raise Closed(ep.conn.name)
            status, error, detail, retry_after = result
            if await self.failed(ep, ctx, token, n, label, status, error, detail, retry_after,
                                 perf() - t.start):
                continue
            return FAILED
        raise AssertionError("unreachable: the last try always returns or raises")

    def _closed(self, ctx: Ctx, t: Try) -> None:
        """Record a try the engine's ``aclose()`` cut short (nothing counts against a circuit;
        ``route`` raises ``AllTargetsFailed`` saying so)."""
        self.record(ctx, Attempt(t.label, "cancelled", t.status, latency=perf() - t.start,
                                 kind="closed"))

    def cancelled(self, ctx: Ctx, t: Try, exc: BaseException) -> None:
        """Record a try cancelled on the wire (a hedge that lost was recorded by the winner's
        side already)."""
        if t.off():
            why = ctx.why_cancelled(exc)
            self.record(ctx, Attempt(t.label, why, t.status, latency=perf() - t.start, kind=why))

    async def _post(self, ep: Endpoint, ctx: Ctx, model: str, body: bytes,
                    t: Try) -> Win | Failure:
        """One routed try: the whole answer, or a failure."""
        try:
            response = await ep.conn.post(model, body)
        except Fault as fault:
            t.off()
            return None, fault.kind, fault.detail, None
        t.off()
        status = response.status
        if 200 <= status < 300:
            try:
                data = loads(response.content)
                parsed = ep.kind.parse(data)
            except (ValueError, WireError) as exc:
                return status, "protocol", str(exc), None
            latency = perf() - t.start
            if t.token is not None:
                await self.circuits.leave(t.token, False)
            if ep.tpm:
                await self.settle_tokens(ep, ctx, parsed.usage.total_tokens)
            self.shared.tally.ok(ep.provider, latency)
            attempt = Attempt(t.label, "ok", status, None, latency)
            self.record(ctx, attempt)
            return Win(ep, model, parsed, data, attempt)
        return status, None, error_detail(response.content, ep.kind), \
            parse_retry_after(response.headers)

    async def failed(self, ep: Endpoint, ctx: Ctx, token: Any, n: int, label: str,
                     status: int | None, error: ErrorKind | None, detail: str,
                     retry_after: float | None, latency: float) -> bool:
        """Record failed try ``n``: ``True`` after sleeping the backoff (retry the same target),
        ``False`` to fail over; raise ``ProviderError`` when the classifier allows neither.
        ``detail`` is masked of the provider's secrets here, then cut short."""
        detail = ep.conn.scrub(detail)
        if token is not None:
            await self.circuits.leave(token, breaker_failure(status, error))
        self.shared.tally.failed(ep.provider)
        hooks = self.hooks
        kind: ErrorKind = error if error is not None else "status"
        classifier = ep.classifier
        if n < ep.tries and can_retry(classifier, status, error):
            wait = retry_delay(ep.backoff, n, self.shared.rng.random(),
                               retry_after if ep.honor else None)
            if ctx.loop.time() + wait < ctx.deadline:  # never sleep past the deadline
                attempt = Attempt(label, "retry", status, None, latency, retry_after, kind,
                                  detail)
                self.record(ctx, attempt)
                if hooks.retry:
                    hooks.fire(hooks.retry, Retrying(label, n + 1, wait, attempt, perf()))
                await asyncio.sleep(wait)
                return True
        if can_fail_over(classifier, status, error):
            attempt = Attempt(label, "failover", status, None, latency, retry_after, kind,
                              detail)
            self.record(ctx, attempt)
            if hooks.failover:
                hooks.fire(hooks.failover, FailingOver(label, attempt, perf()))
            return False
        self.record(ctx, Attempt(label, "fatal", status, None, latency, retry_after, kind,
                                 detail))
        raise ProviderError(
            f"{label} answered {status if status is not None else error}, which "
            f"{classifier.name!r} neither retries nor fails over", ctx.attempts,
            status=status, body=detail, route=ctx.where())

    def record(self, ctx: Ctx, attempt: Attempt) -> None:
        ctx.attempts.append(attempt)
        if self.hooks.attempt_end:
            self.hooks.fire(self.hooks.attempt_end, AttemptEnded(attempt, perf()))


_EMPTY: Final[Mapping[str, Any]] = {}


class _NoAnswer(Exception):
    """The tries of a shared (cacheable) request ended without an answer: every caller sharing
    them learns the outcome (and the last try) instead of trying again."""

    def __init__(self, miss: Miss, last: Attempt | None) -> None:
        super().__init__(miss.name)
        self.miss = miss
        self.last = last


def closed_error(ctx: Ctx) -> AllTargetsFailed:
    """What a request in flight when the engine was closed ends with."""
    return AllTargetsFailed(f"the engine was closed while routing on {ctx.where()}",
                            ctx.attempts, route=ctx.where())


def _shared_text(last: Attempt | None) -> str:
    why = f": {last.error}" if last is not None and last.error else ""
    return f"shared an identical request in flight, which failed{why}"


def answer_of(win: Win) -> Response:
    """The answer a win carries, as the response cache keeps it (no attempts, no raw body)."""
    parsed, ep = win.parsed, win.ep
    usage = parsed.usage
    price = ep.price_for(win.model)
    return Response(
        text=parsed.text, provider=ep.provider, model=win.model,
        finish_reason=parsed.finish_reason, tool_calls=parsed.tool_calls, usage=usage,
        cost=price.cost(usage) if price else None,
        reasoning=reasoning_text(parsed.reasoning), reasoning_blocks=parsed.reasoning,
    )


def _all_targets(graph: RoutingGraph) -> list[Target]:
    found: list[Target] = []

    def walk(node: Node) -> None:
        if isinstance(node, Target):
            found.append(node)
        else:
            for m in node.members:
                walk(m.node)

    for route in graph.routes:
        walk(route.to)
        found.extend(route.targets)
    for group in graph.groups.values():
        walk(group)
    return found
