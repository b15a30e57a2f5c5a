"""A routing graph and a normalised request in, a ``Response`` (or a typed ``RouteError`` listing
every attempt) out: tries with retries and backoff, failover strategies, hedging, circuit breakers,
client-side rate limits, the response cache and single-flight, all inside the route's deadline.

Everything that depends only on the graph (URLs, headers, prices, circuit names, group orders) is
built once per graph in ``Runtime``; a request allocates one small context object and its attempts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

from engine.constraints import PROBE_EVERY, latency_breach, price_breach
from engine.context_window import needed_tokens, overflow
from engine.errors import AllTargetsFailed, DeadlineExceeded, NoRouteError, ProviderError
from engine.graph import Group, Node, Route, RoutingGraph, Target
from engine.providers import get_kind
from engine.providers.base import WireError, loads
from engine.result import Attempt, Response
from engine.runtime.backends import Fault, error_detail
from engine.runtime.context import (
    FAILED,
    SKIPPED,
    Answer,
    Ctx,
    Endpoint,
    Failure,
    Hit,
    Miss,
    Shared,
    Try,
    Win,
    perf,
)
from engine.runtime.deadline import Deadline
from engine.runtime.events import FailingOver
from engine.runtime.hedge import Race
from engine.runtime.lifecycle import Lifecycle, response_of
from engine.runtime.retry import parse_retry_after
from engine.runtime.state.responses import CACHE_SCOPE, Prefix, ResponseCache
from engine.runtime.strategies import GroupOrder
from engine.runtime.transport import Closed, Connection
from engine.values import format_duration

__all__ = ["Runtime", "closed_error"]


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
        self.life = Lifecycle(shared)
        self.record = self.life.record
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
                ep = by_key[target.key] = Endpoint(target, by_provider[p.name], renders.setdefault(rk, rk))
            self.endpoints[id(target)] = ep
        # endpoint -> (model, scope) -> cache key prefix
        self.prefixes: dict[int, dict[tuple[str, str], Prefix]] = {}
        self.probes: dict[str, float] = {}  # target -> when it last got a max_latency probe
        self.orders: dict[str, GroupOrder] = {
            name: GroupOrder(group, shared.rng, shared.latencies) for name, group in graph.groups.items()
        }

    # -- entry ----------------------------------------------------------------------------------

    def match(self, request: dict[str, Any], stream: bool = False) -> tuple[str, Route]:
        model = request["model"]
        route = self.graph.match(model, request.get("metadata") or _EMPTY)
        if route is None:
            err = NoRouteError(f"no route matches model {model!r}")
            self.shared.telemetry.request_started(None, model, request, stream=stream).ended(err)
            raise err
        return model, route

    async def route(self, request: dict[str, Any]) -> Response:
        model, route = self.match(request)
        ctx = Ctx(request, model, route, asyncio.get_running_loop(), self.post)
        rec = ctx.rec = self.shared.telemetry.request_started(route, model, request)
        try:
            response = await self._route(ctx)
        except BaseException as exc:
            rec.ended(exc)
            raise
        rec.ended(response)
        return response

    async def _route(self, ctx: Ctx) -> Response:
        route = ctx.route
        if self.caching:
            ctx.cache = self.state.cache_policy(ctx.request)
        try:
            with Deadline(ctx.loop, ctx.deadline):
                result = await self.run(route.to, ctx)
        except TimeoutError:
            raise DeadlineExceeded(
                f"deadline {format_duration(route.deadline)} exceeded on {ctx.where()}",
                ctx.attempts,
                route=ctx.where(),
            ) from None
        except Closed:
            raise closed_error(ctx) from None
        if isinstance(result, Win):
            return response_of(
                result.ep, result.model, result.parsed, tuple(ctx.attempts), perf() - ctx.start, result.data
            )
        if isinstance(result, Hit):  # nothing was spent on this answer: cost 0
            r = result.response
            return Response(
                text=r.text,
                provider=result.ep.provider,
                model=r.model,
                finish_reason=r.finish_reason,
                tool_calls=r.tool_calls,
                usage=r.usage,
                cost=0.0,
                cached=True,
                latency=perf() - ctx.start,
                attempts=tuple(ctx.attempts),
                raw=r.raw,
                reasoning=r.reasoning,
                reasoning_blocks=r.reasoning_blocks,
                native=r.native,
            )
        raise AllTargetsFailed(f"every target failed on {ctx.where()}", ctx.attempts, route=ctx.where())

    # -- graph walk -----------------------------------------------------------------------------

    async def run(self, node: Node, ctx: Ctx, wait: bool = True) -> Answer | Miss:
        """Try ``node`` (a target, or a group by its strategy) until it answers or gives up.
        ``wait``: nothing is left to fail over to after ``node`` (the route's last resort), so
        a used-up rate limit waits for room, within the deadline, instead of skipping."""
        if isinstance(node, Target):
            return await self.attempt(self.endpoints[id(node)], ctx, wait)
        if node.hedge_after is not None and self.orders[node.name].races:
            return await Race(self, node, ctx, wait).run()
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
                result = await (
                    self.attempt(self.endpoints[id(node)], ctx, final)
                    if isinstance(node, Target)
                    else self.run(node, ctx, final)
                )
            else:
                busy.enter(order.key(i))
                try:
                    result = await self.run(node, ctx, final)
                finally:
                    busy.leave(order.key(i))
            if timed and result is not SKIPPED:
                self.shared.latencies.observe(order.key(i), perf() - start, isinstance(result, Answer))
            if isinstance(result, Answer):
                return result
            if result is FAILED:
                tried += 1
                skipped_only = False
                if isinstance(node, Group) and self.hooks.failover:
                    self.hooks.fire(self.hooks.failover, FailingOver(node.name, None, perf()))
        return SKIPPED if skipped_only else FAILED

    # -- one target -----------------------------------------------------------------------------

    async def attempt(self, ep: Endpoint, ctx: Ctx, wait: bool = True) -> Answer | Miss:
        """Try one target (routed: up to a whole answer; streamed: up to its first event),
        retrying per its classifier, or answer from the response cache or share an identical
        request in flight; ``FAILED`` means fail over, ``SKIPPED`` that the target was passed
        over at no network cost, and a non-failover error raises ``ProviderError``. ``wait``:
        a rate-limited target waits for room (within the deadline) instead of failing over."""
        model = ep.model if ep.model is not None else ctx.model
        label = ep.label(model)
        ctx.seen.add(ep.key)
        refused = self.refusal(ep, ctx, model, label)
        if refused is not None:  # context too small, or a route limit: nothing is sent
            self.record(ctx, refused)
            return SKIPPED
        try:
            body = ep.body(ctx, model, ctx.stream)
        except Exception as exc:  # a template that cannot render this request: no network cost
            self.record(ctx, Attempt(label, "failover", kind="template", detail=str(exc)[:290]))
            return FAILED
        if ctx.cache != "off":  # (never for a stream)
            return await self._shared(ep, ctx, model, label, body, wait)
        return await self.life.tries(ep, ctx, model, label, body, wait, ctx.exchange)

    def refusal(self, ep: Endpoint, ctx: Ctx, model: str, label: str) -> Attempt | None:
        """The skipped attempt of a target the request must not go to (its model's ``context``
        is too small for it; it breaks the route's ``max_price`` or ``max_latency``), else
        ``None``. A target over ``max_latency`` is let through once per ``PROBE_EVERY``."""
        info = ep.models.get(model)
        if info is not None and info.context is not None:
            detail = overflow(needed_tokens(ctx.request), info.context)
            if detail is not None:
                return Attempt(label, "skipped", kind="context", detail=detail)
        limits = ctx.route.constraints
        if limits is None:
            return None
        detail = price_breach(limits, ep.price_for(model))
        if detail is None and limits.max_latency is not None:
            window = self.shared.health.windows.get("t:" + label)
            detail = latency_breach(limits, window.p95 if window is not None else None)
            if detail is not None and self._probe(label):
                detail = None
        return Attempt(label, "skipped", kind="constraint", detail=detail) if detail else None

    def _probe(self, label: str) -> bool:
        """Whether a target over ``max_latency`` gets its probe now (one per ``PROBE_EVERY``)."""
        now = time.monotonic()
        if now - self.probes.get(label, -PROBE_EVERY) < PROBE_EVERY:
            return False
        self.probes[label] = now
        return True

    async def _shared(
        self, ep: Endpoint, ctx: Ctx, model: str, label: str, body: bytes, wait: bool
    ) -> Answer | Miss:
        """A cacheable request: the cached answer, the answer of an identical request in flight
        (here or, with Redis, on another instance), or this request's own tries, whose answer
        is then cached. A caller that shared another's outcome records one attempt saying so.
        In process (memory), the lookup and a flight nobody else is on run here, inline."""
        cache = self.state.responses
        if cache.local is None or ctx.cache != "use":
            return await self._sharing(ep, ctx, model, label, body, wait)
        headers = ep.kind.request_headers(ctx.request)  # they change the answer: keyed too
        scope = CACHE_SCOPE.get()
        prefix = (
            self._prefix(ep, model, scope)
            if not headers
            else ResponseCache.prefix(_identity(ep, model, scope, headers))
        )
        key = cache.key_of(prefix, body)
        start = perf()
        hit = cache.peek(key)  # a local lookup never yields: nothing lands before the flight
        if hit is not None:
            ctx.rec.cache_lookup(True)
            attempt = Attempt(label, "cached", None, None, perf() - start)
            self.record(ctx, attempt)
            return Hit(ep, hit, attempt)
        flights = self.state.flights
        flight = flights.lead(key)
        if flight is None:  # an identical request is in flight here: share its outcome
            return await self._sharing(ep, ctx, model, label, body, wait, key)
        t = Try(ctx, label)  # (as a hedge's try: a cancelled one is recorded by the winner)
        try:
            result = await self.life.tries(ep, ctx, model, label, body, wait, self.post)
        except BaseException as exc:
            flights.land(key, flight, exc)
            raise
        finally:
            t.off()
            ctx.rec.cache_lookup(False)
        if isinstance(result, Win):
            cache.keep_lazy(key, partial(response_of, result.ep, result.model, result.parsed, cached=True))
            if flight.future is not None:  # followers wait: the answer as the cache keeps it
                flights.land(key, flight, None, response_of(result.ep, result.model, result.parsed))
            else:
                flights.land(key, flight, None)
            return result
        if flight.future is not None:
            flights.land(key, flight, _NoAnswer(result, ctx.attempts[-1] if ctx.attempts else None))
        else:
            flights.land(key, flight, None)
        return result

    def _prefix(self, ep: Endpoint, model: str, scope: str) -> Prefix:
        """The cache key's hash of (endpoint identity, model, scope), made once per endpoint,
        model and scope (at most ``_PREFIXES_MAX`` of them kept: pass-through models are the
        client's to choose)."""
        by_model = self.prefixes.get(id(ep))
        if by_model is None:
            by_model = self.prefixes[id(ep)] = {}
        prefix = by_model.get((model, scope))
        if prefix is None:
            prefix = ResponseCache.prefix(_identity(ep, model, scope))
            if len(by_model) < _PREFIXES_MAX:
                by_model[model, scope] = prefix
        return prefix

    async def _sharing(
        self,
        ep: Endpoint,
        ctx: Ctx,
        model: str,
        label: str,
        body: bytes,
        wait: bool,
        key: str | None = None,
    ) -> Answer | Miss:
        """``_shared`` through ``State.respond``: a remote backend, a refresh, or a follower of
        an identical request in flight here (``key``: its cache key, already looked up)."""
        sharing = _Sharing(self, ep, ctx, model, label, body, wait)
        t = Try(ctx, label)  # a hedge waiting for a shared answer can be cancelled
        hit = False
        try:
            if key is not None:
                response = await self.state.flights.do(key, partial(self.state.kept, key, sharing.call))
            else:
                response = await self.state.respond(
                    _identity(ep, model, CACHE_SCOPE.get(), ep.kind.request_headers(ctx.request)),
                    body,
                    sharing.call,
                    refresh=ctx.cache == "refresh",
                    deadline=ctx.deadline,
                )
        except _NoAnswer as exc:
            return sharing.mine[0] if sharing.mine else self._shared_miss(ctx, label, exc, perf() - t.start)
        except ProviderError as exc:
            if sharing.ran:
                raise
            raise self._shared_fatal(ctx, label, exc, perf() - t.start) from None
        except asyncio.CancelledError as exc:
            if not sharing.ran:
                self.life.cancelled(ctx, t, exc)
            raise
        else:
            hit = response.cached and not sharing.ran
        finally:
            t.off()
            ctx.rec.cache_lookup(hit)
        if sharing.mine:
            return sharing.mine[0]  # we asked upstream: the answer as usual (with its raw body)
        attempt = Attempt(label, "cached" if response.cached else "coalesced", None, None, perf() - t.start)
        self.record(ctx, attempt)
        return Hit(ep, response, attempt)

    def _shared_fatal(self, ctx: Ctx, label: str, exc: ProviderError, waited: float) -> ProviderError:
        """The identical request we waited for ended with a non-failover error: recorded, and
        the error to raise with this request's attempts."""
        last = exc.attempts[-1] if exc.attempts else None
        text = _shared_text(last)
        kind = last.kind if last else "status"
        self.record(ctx, Attempt(label, "fatal", exc.status, text, waited, kind=kind, detail=text))
        return ProviderError(
            str(exc.args[0]).split("\n", 1)[0],
            ctx.attempts,
            status=exc.status,
            body=exc.body,
            route=ctx.where(),
        )

    def _shared_miss(self, ctx: Ctx, label: str, exc: _NoAnswer, waited: float) -> Miss:
        """The identical request we waited for got no answer: so do we, without trying again."""
        last = exc.last
        if exc.miss is SKIPPED:
            self.record(
                ctx,
                Attempt(
                    label,
                    "skipped",
                    None,
                    last.error if last else None,
                    kind=last.kind if last else None,
                    detail=last.detail if last else None,
                ),
            )
            return SKIPPED
        self.record(
            ctx,
            Attempt(
                label,
                "failover",
                last.status if last else None,
                _shared_text(last),
                waited,
                kind=last.kind if last else None,
                detail=_shared_text(last),
            ),
        )
        return FAILED

    async def post(self, ep: Endpoint, ctx: Ctx, model: str, body: bytes, t: Try) -> Win | Failure:
        """The routed exchange: one try's whole answer, or a failure."""
        try:
            response = await ep.conn.post(model, body, ep.kind.request_headers(ctx.request))
        except Fault as fault:
            t.off()
            return Failure(None, fault.kind, fault.detail)
        t.off()
        status = response.status
        if 200 <= status < 300:
            try:
                data = loads(response.content)
                parsed = ep.kind.parse(data)
            except (ValueError, WireError) as exc:
                return Failure(status, "protocol", str(exc))
            attempt = await self.life.settle(ep, ctx, t.label, t.token, status, t.start, parsed.usage)
            return Win(ep, model, parsed, data, attempt)
        return Failure(
            status, None, error_detail(response.content, ep.kind), parse_retry_after(response.headers)
        )


_EMPTY: Final[Mapping[str, Any]] = {}
_PREFIXES_MAX: Final = 1024  # cache key prefixes kept per endpoint


class _Sharing:
    """One cacheable request's own tries, run by the state only when neither the cache nor an
    identical request in flight answers: ``ran`` says they ran, ``mine`` what they produced."""

    __slots__ = ("body", "ctx", "ep", "label", "mine", "model", "ran", "rt", "wait")

    def __init__(
        self, rt: Runtime, ep: Endpoint, ctx: Ctx, model: str, label: str, body: bytes, wait: bool
    ) -> None:
        self.rt, self.ep, self.ctx, self.wait = rt, ep, ctx, wait
        self.model, self.label, self.body = model, label, body
        self.ran = False
        self.mine: list[Win | Miss] = []

    async def call(self) -> Response:
        self.ran = True
        ctx = self.ctx
        result = await self.rt.life.tries(
            self.ep, ctx, self.model, self.label, self.body, self.wait, self.rt.post
        )
        self.mine.append(result)
        if not isinstance(result, Win):
            raise _NoAnswer(result, ctx.attempts[-1] if ctx.attempts else None)
        return response_of(result.ep, result.model, result.parsed)


class _NoAnswer(Exception):
    """The tries of a shared (cacheable) request ended without an answer: every caller sharing
    them learns the outcome (and the last try) instead of trying again."""

    def __init__(self, miss: Miss, last: Attempt | None) -> None:
        super().__init__(miss.name)
        self.miss = miss
        self.last = last


def closed_error(ctx: Ctx) -> AllTargetsFailed:
    """What a request in flight when the engine was closed ends with."""
    return AllTargetsFailed(
        f"the engine was closed while routing on {ctx.where()}", ctx.attempts, route=ctx.where()
    )


def _shared_text(last: Attempt | None) -> str:
    why = f": {last.error}" if last is not None and last.error else ""
    return f"shared an identical request in flight, which failed{why}"


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


def _identity(ep: Endpoint, model: str, scope: str, headers: tuple[tuple[str, str], ...] = ()) -> str:
    """What the response cache keys an answer's endpoint by: the connection's identity, the
    model, the caller's scope (``CACHE_SCOPE``), and the request's own headers
    (``Kind.request_headers``: Anthropic's beta flags and version), which change the answer as
    much as the body does."""
    identity = f"{ep.conn.identity}\x00{model}\x00{scope}" if scope else f"{ep.conn.identity}\x00{model}"
    return identity + "".join(f"\x00{k}:{v}" for k, v in headers) if headers else identity
