"""A hedged group in, its first answer out: start the first member, start the next whenever
``hedge_after`` passes without an answer or a running member fails; the first answer wins and the
others are cancelled (recorded as cancelled at once, their connections released as the
cancellation reaches them)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.graph import Group, Target
from engine.result import Attempt
from engine.runtime.context import FAILED, HEDGE_LOST, SKIPPED, Answer, Ctx, Miss, perf

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

__all__ = ["Race"]

Runner = asyncio.Task[Answer | Miss]


class Race:
    """One hedged group's race, for one request."""

    __slots__ = ("ctx", "failed", "group", "launched", "next_i", "pending", "rt", "wait")

    def __init__(self, rt: Runtime, group: Group, ctx: Ctx, wait: bool) -> None:
        self.rt, self.group, self.ctx, self.wait = rt, group, ctx, wait
        self.pending: set[Runner] = set()
        self.next_i = 0  # the next member to start
        self.launched = 0  # members started that count against max_attempts
        self.failed = False  # a member tried and failed (else each was skipped)

    async def run(self) -> Answer | Miss:
        ctx, pending = self.ctx, self.pending
        if ctx.live is None:
            ctx.live = {}
        reason: str | None = HEDGE_LOST
        try:
            self.launch()
            while pending:
                done, _ = await asyncio.wait(
                    pending,
                    timeout=self.group.hedge_after if self.more() else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    self.launch()
                    continue
                pending -= done
                won = self.finished(done)
                if won is not None:
                    return won
            return FAILED if self.failed else SKIPPED
        except asyncio.CancelledError as exc:
            reason = HEDGE_LOST if HEDGE_LOST in exc.args else None  # deadline (or caller)
            raise
        finally:
            if pending:
                self.stop(reason)
                if reason is None:  # cut by the deadline: let each record its own try
                    await asyncio.wait(pending)

    def more(self) -> bool:
        return self.launched < self.group.max_attempts and self.next_i < len(self.group.members)

    def launch(self) -> None:
        """Start the next member not reached already through another group of this route."""
        group, members, rt = self.group, self.group.members, self.rt
        while self.next_i < len(members):
            node = members[self.next_i].node
            self.next_i += 1
            final = self.wait and (self.next_i == len(members) or self.launched + 1 >= group.max_attempts)
            if isinstance(node, Target):
                if rt.endpoints[id(node)].key in self.ctx.seen:
                    continue
                final = final or group.on_limit == "wait"
            self.pending.add(asyncio.ensure_future(rt.run(node, self.ctx, final)))
            self.launched += 1
            return

    def finished(self, done: set[Runner]) -> Answer | None:
        """The answer among ``done``, if any (others answering in the same instant are
        discarded); else start the next members in place of those that gave up."""
        results = [t.result() for t in done if t.exception() is None]
        wins = [r for r in results if isinstance(r, Answer)]
        if wins:
            for late in wins[1:]:  # answered in the same instant: one answer is used
                late.discard(self.ctx)
            return wins[0]
        for task in done:
            error = task.exception()
            if error is not None:
                raise error  # a ProviderError: the route stops
        for result in results:
            if result is SKIPPED:
                self.launched -= 1  # an open circuit costs nothing and does not count
            else:
                self.failed = True
            if self.more():
                self.launch()
        return None

    def stop(self, reason: str | None) -> None:
        """Cancel the members still running. When an answer won, their tries are recorded as
        cancelled here and now, and the route returns without waiting for them to unwind."""
        ctx, live, now = self.ctx, self.ctx.live, perf()
        stragglers = self.rt.shared.stragglers
        for task in self.pending:
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
                    self.rt.life.record(
                        ctx, Attempt(label, "cancelled", latency=now - start, kind="cancelled")
                    )
            stragglers.add(task)
            task.add_done_callback(stragglers.discard)
