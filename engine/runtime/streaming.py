"""A runtime and a streaming request in, unified stream events out: text and tool-call deltas, then
one ``Done`` with usage, cost, attempts and time to first token.

A target "answers" a stream when its first event arrives: until then retries, failover and hedging
work as for ``route()`` (the group strategies are shared; hedged groups race to the first event).
After the first event has been yielded a broken stream raises ``StreamInterrupted`` carrying the
text received, never mixing two providers' output. The route's deadline bounds the whole stream:
every wait on the network runs under it (the consumer's own time between events is never
cancelled). The events of one network read are handed out from a buffer, without a timeout each
(those of the read that carried the end marker together with the ``Done``, nothing awaited on
the network between them); an in-band error event (or a malformed line) ends the stream only
after the events its read carried before it have been handed out, and they are part of
``StreamInterrupted.received``.
Nothing is read after the kind's end marker (``[DONE]``, ``message_stop``, ...): a body that
never ends after it is a finished stream, its connection dropped rather than reused.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any

from engine.errors import AllTargetsFailed, DeadlineExceeded, StreamInterrupted
from engine.graph import Route
from engine.providers.base import StreamParser, WireError
from engine.result import Attempt, Done, ErrorKind, StreamEvent, TextDelta
from engine.runtime.backends import Fault, Streamed, error_detail, line_batches
from engine.runtime.breakers import Token
from engine.runtime.context import Answer, Ctx, Endpoint, Failure, Try, perf
from engine.runtime.deadline import Deadline
from engine.runtime.executor import Runtime, closed_error
from engine.runtime.lifecycle import done_of
from engine.runtime.retry import parse_retry_after
from engine.runtime.transport import Closed
from engine.telemetry import NULL
from engine.values import format_duration

__all__ = ["EventStream"]


class Live(Answer):
    """A stream whose first events have arrived: the rest is read by ``EventStream``."""

    __slots__ = (
        "broke",
        "ended",
        "ep",
        "first",
        "label",
        "lines",
        "model",
        "n",
        "parser",
        "response",
        "start",
        "token",
        "ttft",
    )

    def __init__(
        self,
        ep: Endpoint,
        model: str,
        label: str,
        n: int,
        token: Token | None,
        response: Streamed,
        stream: AsyncGenerator[list[str], None],
        parser: StreamParser,
        first: list[StreamEvent],
        broke: WireError | None,
        start: float,
        ttft: float,
        ended: bool,
    ) -> None:
        self.ep, self.model, self.label, self.n, self.token = ep, model, label, n, token
        self.response, self.lines, self.parser = response, stream, parser
        self.first, self.start, self.ttft, self.ended = first, start, ttft, ended
        self.broke = broke  # an error later in the first events' read: raised after them

    def discard(self, ctx: Ctx) -> None:
        """Lost a hedge race: recorded as cancelled, its connection released in the background."""
        attempt = Attempt(
            self.label,
            "cancelled",
            self.response.status,
            latency=perf() - self.start,
            kind="cancelled",
            detail="hedge lost (answered late)",
        )
        ctx.attempts.append(attempt)
        ctx.rec.try_ended(attempt)
        task = asyncio.ensure_future(self.close())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        """Stop reading (the line generator first, then the response: dropped unless read to
        its end)."""
        try:
            await self.lines.aclose()
        finally:
            await self.response.close()


def _note(received: list[str], events: list[StreamEvent]) -> None:
    """Keep the text of ``events`` (what a ``StreamInterrupted`` reports as received)."""
    for event in events:
        if type(event) is TextDelta:
            received.append(event.text)


class EventStream:
    """``async for event in engine.stream(request)``; also an async context manager that closes
    the upstream response if the consumer stops early. ``on_close`` runs once: at ``aclose``,
    or when a stream the consumer dropped without closing it is garbage collected (its
    generator, and with it the upstream response, is then closed by the event loop's async
    generator finalizer)."""

    def __init__(
        self,
        runtime: Runtime,
        request: dict[str, Any],
        model: str,
        route: Route,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._rt = runtime
        self._request = request
        self._model = model
        self._route = route
        self._on_close: weakref.finalize[[], EventStream] | None = None
        if on_close is not None:
            self._on_close = weakref.finalize(self, on_close)
            self._on_close.atexit = False
        self._ctx: Ctx | None = None
        self._gen: AsyncIterator[list[StreamEvent]] | None = None
        self._buffer: list[StreamEvent] = []  # the rest of the last read's events, reversed
        self._received: list[str] = []
        self._started = False  # an event was yielded: no more failover
        self._closed = False
        self._chunks = 0  # events read after the first read's (for the per-chunk time)
        self._answering: str | None = None
        self._tries = 0  # the tries made until the answering one (itself included)

    @property
    def answering(self) -> str | None:
        """The target (``provider/model``) whose stream is relayed, once its first event came."""
        return self._answering

    @property
    def tries(self) -> int:
        """The tries made so far (those that failed before the answering one included); the
        answering try counted once, whether or not its attempt is recorded yet (a stream read
        whole in its first read is settled before its first event is handed out)."""
        if self._answering is not None:
            return self._tries
        return len(self._ctx.attempts) if self._ctx is not None else 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        buffer = self._buffer
        if buffer:
            return buffer.pop()
        if self._closed:
            raise StopAsyncIteration
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = Ctx(
                self._request, self._model, self._route, asyncio.get_running_loop(), self._first, True
            )
            ctx.rec = self._rt.shared.telemetry.request_started(
                self._route, self._model, self._request, stream=True
            )
            self._gen = self._events(ctx)
        assert self._gen is not None
        try:
            with Deadline(ctx.loop, ctx.deadline):
                batch = await self._gen.__anext__()
        except TimeoutError:
            err = self._deadline(ctx)
            self._end(err)
            await self.aclose()
            raise err from None
        except BaseException as exc:
            self._end(None if isinstance(exc, StopAsyncIteration) else exc)
            await self.aclose()
            raise
        if len(batch) == 1:
            return batch[0]
        batch.reverse()
        self._buffer = batch
        return batch.pop()

    def _deadline(self, ctx: Ctx) -> StreamInterrupted | DeadlineExceeded:
        """What a stream past its deadline raises: cut mid-stream, or before its first event."""
        where = ctx.where()
        budget = format_duration(self._route.deadline)
        if self._started:
            return StreamInterrupted(
                f"deadline {budget} exceeded mid-stream on {where}",
                ctx.attempts,
                received="".join(self._received),
                route=where,
            )
        return DeadlineExceeded(f"deadline {budget} exceeded on {where}", ctx.attempts, route=where)

    def _end(self, result: Done | BaseException | None) -> None:
        """The stream is over (its ``Done``, its error, or ``None``: closed early): told to the
        recorder, once."""
        ctx = self._ctx
        if ctx is not None:
            rec, ctx.rec = ctx.rec, NULL
            rec.ended(result, chunks=self._chunks)

    async def batch(self) -> list[StreamEvent]:
        """The events of the next network read, in order (empty at the end): for a reader that
        pays per call, like the sync stream's hop to the loop thread."""
        try:
            first = await self.__anext__()
        except StopAsyncIteration:
            return []
        rest, self._buffer = self._buffer, []
        rest.append(first)
        rest.reverse()  # (the buffer is kept last event first)
        return rest

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer = []
        gen = self._gen
        try:
            if gen is not None:
                await gen.aclose()  # type: ignore[attr-defined]
        finally:
            self._end(None)  # (a no-op once the stream ended)
            if self._on_close is not None:
                self._on_close()  # a finalizer: runs once, here or at garbage collection

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- after the first event ------------------------------------------------------------------

    async def _events(self, ctx: Ctx) -> AsyncIterator[list[StreamEvent]]:
        """The stream's events, one list (never empty) per network read that produced any; the
        read that carried the end marker comes with the ``Done`` (nothing is awaited between)."""
        life = self._rt.life
        live = await self._live(ctx)
        self._answering = live.label
        self._tries = len(ctx.attempts) + 1
        received = self._received
        parser = live.parser
        last = events = live.first  # ``last``: the end marker's read, handed out with the Done
        try:
            self._started = True
            ctx.rec.first_chunk()
            self._chunks = len(events)
            _note(received, events)
            if live.broke is not None:  # after the first event: no failover
                yield events
                raise live.broke
            if not live.ended:
                yield events
                last = []
                read = parser.lines
                async for lines in live.lines:
                    events, broke = read(lines)
                    _note(received, events)
                    self._chunks += len(events)
                    if broke is not None:
                        if events:
                            yield events
                        raise broke
                    if parser.done:  # the end marker: whatever follows is not read
                        last = events
                        break
                    if events:
                        yield events
                else:
                    last = [*parser.feed("")]  # an event the body ended inside
                    if not parser.done:
                        if last:
                            yield last
                        raise Fault("reset", "stream ended before its end marker")
        except (Fault, WireError) as exc:
            raise await self._broke(live, ctx, exc) from exc
        except (asyncio.CancelledError, GeneratorExit) as exc:
            life.cut(ctx, live.label, live.response.status, live.start, exc)
            raise
        finally:
            await live.close()
        await life.settle(
            live.ep, ctx, live.label, live.token, live.response.status, live.start, parser.usage
        )
        done = done_of(live.ep, live.model, parser, tuple(ctx.attempts), perf() - ctx.start, live.ttft)
        self._end(done)
        last.append(done)
        yield last

    async def _live(self, ctx: Ctx) -> Live:
        """The route's first target to answer with its first events."""
        try:
            live = await self._rt.run(ctx.route.to, ctx)
        except Closed:
            raise closed_error(ctx) from None
        if not isinstance(live, Live):
            raise AllTargetsFailed(f"every target failed on {ctx.where()}", ctx.attempts, route=ctx.where())
        return live

    async def _broke(self, live: Live, ctx: Ctx, exc: Fault | WireError) -> StreamInterrupted:
        """A stream that broke after its first event: recorded; the error to raise."""
        error: ErrorKind
        error, detail = (exc.kind, exc.detail) if isinstance(exc, Fault) else ("protocol", str(exc))
        text = await self._rt.life.broke(
            live.ep, ctx, live.label, live.token, live.response.status, live.start, error, detail
        )
        return StreamInterrupted(
            f"{live.label} stream broke after the first event ({text})",
            ctx.attempts,
            received="".join(self._received),
            route=ctx.where(),
        )

    # -- up to the first event ------------------------------------------------------------------

    async def _first(self, ep: Endpoint, ctx: Ctx, model: str, body: bytes, t: Try) -> Live | Failure:
        """The streamed exchange: one try up to its first event (the live stream), or a failure.
        Streams are rate limited like routed requests, and never cached."""
        response: Streamed | None = None
        stream: AsyncGenerator[list[str], None] | None = None
        answered = False
        try:
            response = await ep.conn.open_stream(model, body, ep.kind.request_headers(ctx.request))
            status = t.status = response.status
            if 200 <= status < 300:
                parser = ep.kind.stream_parser()
                stream = lines_of = line_batches(response)
                first, broke, ended = await _first_events(parser, lines_of)
                answered = True
                return Live(
                    ep,
                    model,
                    t.label,
                    t.n,
                    t.token,
                    response,
                    lines_of,
                    parser,
                    first,
                    broke,
                    t.start,
                    perf() - ctx.start,
                    ended,
                )
            return Failure(
                status, None, await _error_detail(response, ep), parse_retry_after(response.headers)
            )
        except Fault as fault:
            return Failure(t.status, fault.kind, fault.detail)
        except WireError as exc:
            return Failure(t.status, "protocol", str(exc))
        except asyncio.CancelledError as exc:
            self._rt.life.cancelled(ctx, t, exc)  # recorded before the response is closed
            raise
        finally:
            t.off()
            if response is not None and not answered:
                try:
                    if stream is not None:
                        await stream.aclose()
                finally:
                    await response.close()


async def _first_events(
    parser: StreamParser, lines_of: AsyncGenerator[list[str], None]
) -> tuple[list[StreamEvent], WireError | None, bool]:
    """Read up to the first events: (the events, an error later in their read, whether the
    stream ended). A malformed line or an in-band error before any event fails the try."""
    first: list[StreamEvent] = []
    broke: WireError | None = None
    while not first:
        try:
            lines = await anext(lines_of)
        except StopAsyncIteration:
            first = [*parser.feed("")]
            if not parser.done:
                raise Fault("reset", "stream ended before its end marker") from None
            return first, broke, True  # a complete stream (with no or few events)
        first, broke = parser.lines(lines)
        if broke is not None and not first:
            raise broke  # before any event: this try failed (fail over)
        if parser.done:  # the end marker came in this read: nothing more is read
            return first, broke, True
    return first, broke, False


async def _error_detail(response: Streamed, ep: Endpoint) -> str:
    """What a streamed try's error answer says (its status, when the body cannot be read)."""
    try:
        content = await response.read()
    except Fault:
        return f"HTTP {response.status}"
    return error_detail(content, ep.kind)
