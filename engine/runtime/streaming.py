"""A runtime and a streaming request in, unified stream events out: text and tool-call deltas, then
one ``Done`` with usage, cost, attempts and time to first token.

Failover (and retries) are allowed until the first event has been yielded; after that a broken
stream raises ``StreamInterrupted`` carrying the text received, never mixing two providers' output.
The route's deadline bounds the whole stream: each ``__anext__`` runs under it, so the consumer's
own time between events is never cancelled by it. Hedged groups stream in priority order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from engine.errors import AllTargetsFailed, DeadlineExceeded, StreamInterrupted
from engine.graph import Node, Route, Target
from engine.providers.base import WireError
from engine.result import Attempt, Done, StreamEvent, TextDelta
from engine.runtime.backends import Fault, error_detail, lines
from engine.runtime.context import FAILED, HEDGE_LOST, SKIPPED, Ctx, Endpoint, Miss, perf
from engine.runtime.events import AttemptStarted
from engine.runtime.executor import Runtime
from engine.runtime.retry import breaker_failure, parse_retry_after
from engine.values import format_duration

__all__ = ["EventStream"]


class EventStream:
    """``async for event in engine.stream(request)``; also an async context manager that closes
    the upstream response if the consumer stops early."""

    def __init__(self, runtime: Runtime, request: dict[str, Any], model: str, route: Route,
                 on_close: Callable[[], None] | None = None) -> None:
        self._rt = runtime
        self._request = request
        self._model = model
        self._route = route
        self._on_close = on_close
        self._ctx: Ctx | None = None
        self._gen: AsyncIterator[StreamEvent] | None = None
        self._received: list[str] = []
        self._started = False  # an event was yielded: no more failover
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise StopAsyncIteration
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = Ctx(self._request, self._model, self._route,
                                  asyncio.get_running_loop())
            self._gen = self._events(ctx)
        assert self._gen is not None
        try:
            async with asyncio.timeout_at(ctx.deadline):
                return await self._gen.__anext__()
        except TimeoutError:
            await self.aclose()
            where = ctx.where()
            budget = format_duration(self._route.deadline)
            if self._started:
                raise StreamInterrupted(f"deadline {budget} exceeded mid-stream on {where}",
                                        ctx.attempts, received="".join(self._received),
                                        route=where) from None
            raise DeadlineExceeded(f"deadline {budget} exceeded on {where}", ctx.attempts,
                                   route=where) from None
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        gen = self._gen
        if gen is not None:
            await gen.aclose()  # type: ignore[attr-defined]
        if self._on_close is not None:
            self._on_close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- the producer ---------------------------------------------------------------------------

    async def _events(self, ctx: Ctx) -> AsyncIterator[StreamEvent]:
        rt = self._rt
        last: list[Miss] = [FAILED]
        for ep in _walk(rt, ctx.route.to, ctx, last):
            model = ep.model if ep.model is not None else ctx.model
            label = ep.label(model)
            ctx.seen.add(ep.key)
            try:
                body = ep.body(ctx, model, True)
            except Exception as exc:
                rt.record(ctx, Attempt(label, "failover", None, f"template: {exc}"[:300]))
                last[0] = FAILED
                continue
            circuit = ep.circuit_for(model)
            for n in range(1, ep.tries + 1):
                token = None
                if circuit is not None:
                    token = await rt.circuits.enter(circuit, ep.breaker)  # type: ignore[arg-type]
                    if token is None:
                        rt.record(ctx, Attempt(label, "skipped", None, "circuit open"))
                        last[0] = SKIPPED if n == 1 else FAILED
                        break
                if rt.hooks.attempt_start:
                    rt.hooks.fire(rt.hooks.attempt_start, AttemptStarted(label, n, perf()))
                start = perf()
                status: int | None = None
                error: str | None = None
                detail = ""
                retry_after: float | None = None
                response = None
                try:
                    response = await ep.conn.open_stream(model, body)
                    status = response.status
                    if 200 <= status < 300:
                        parser = ep.kind.stream_parser()
                        feed = parser.feed
                        received = self._received
                        ttft: float | None = None
                        async for line in lines(response):
                            for delta in feed(line):
                                if ttft is None:
                                    ttft = perf() - ctx.start
                                    self._started = True
                                if type(delta) is TextDelta:
                                    received.append(delta.text)
                                yield delta
                        for delta in feed(""):  # flush an event the body ended inside
                            yield delta
                        if not parser.done:
                            raise Fault("reset", "stream ended before its end marker")
                        latency = perf() - start
                        if token is not None:
                            await rt.circuits.leave(token, False)
                        rt.shared.tally.ok(ep.provider, latency)
                        rt.record(ctx, Attempt(label, "ok", status, None, latency))
                        yield self._done(ep, model, parser.finish_reason, parser.usage, ctx, ttft)
                        return
                    try:
                        content = await response.read()
                    except Fault:
                        detail = f"HTTP {status}"
                    else:
                        detail = ep.conn.scrub(error_detail(content, ep.kind))
                    retry_after = parse_retry_after(response.headers)
                except Fault as fault:
                    error, detail = fault.kind, fault.detail
                except WireError as exc:
                    error, detail = "protocol", ep.conn.scrub(str(exc))[:300]
                except (asyncio.CancelledError, GeneratorExit) as exc:
                    if token is not None:
                        rt.circuits.abandon(token)
                    why = "cancelled" if isinstance(exc, GeneratorExit) or HEDGE_LOST in exc.args \
                        else "deadline"
                    rt.record(ctx, Attempt(label, why, status, why, perf() - start))  # type: ignore[arg-type]
                    raise
                finally:
                    if response is not None:
                        await response.close()
                if self._started:
                    await self._interrupted(ep, ctx, token, label, status, error, detail,
                                            perf() - start)
                if await rt.failed(ep, ctx, token, n, label, status, error, detail, retry_after,
                                   perf() - start):
                    continue
                last[0] = FAILED
                break
        raise AllTargetsFailed(f"every target failed on {ctx.where()}", ctx.attempts,
                               route=ctx.where())

    async def _interrupted(self, ep: Endpoint, ctx: Ctx, token: Any, label: str,
                           status: int | None, error: str | None, detail: str,
                           latency: float) -> None:
        rt = self._rt
        if token is not None:
            await rt.circuits.leave(token, breaker_failure(status, error))
        rt.shared.tally.failed(ep.provider)
        text = f"{error}: {detail}" if error is not None else f"status: {detail}"
        rt.record(ctx, Attempt(label, "fatal", status, text, latency))
        raise StreamInterrupted(f"{label} stream broke after the first event ({text})",
                                ctx.attempts, received="".join(self._received), route=ctx.where())

    def _done(self, ep: Endpoint, model: str, finish: str | None, usage: Any, ctx: Ctx,
              ttft: float | None) -> Done:
        price = ep.price_for(model)
        return Done(
            provider=ep.provider, model=model, finish_reason=finish, usage=usage,
            cost=price.cost(usage.input_tokens, usage.output_tokens) if price else None,
            attempts=tuple(ctx.attempts), latency=perf() - ctx.start, ttft=ttft,
        )


def _walk(rt: Runtime, node: Node, ctx: Ctx, last: list[Miss]) -> Iterator[Endpoint]:
    """The endpoints to try in order; after each, ``last[0]`` says whether it was ``SKIPPED``
    (not counted against ``max_attempts``) or ``FAILED``."""
    if isinstance(node, Target):
        yield rt.endpoints[id(node)]
        return
    order = rt.orders[node.name]
    members = node.members
    tried = 0
    for i in order.order():
        if tried >= node.max_attempts:
            return
        member = members[i].node
        if isinstance(member, Target):
            ep = rt.endpoints[id(member)]
            if ep.key in ctx.seen:
                continue
            yield ep
            if last[0] is not SKIPPED:
                tried += 1
        else:
            before = len(ctx.attempts)
            yield from _walk(rt, member, ctx, last)
            if any(a.outcome != "skipped" for a in ctx.attempts[before:]):
                tried += 1
