"""``Deadline``: asyncio.timeout_at's behaviour on the request path, at a fraction of its cost."""

from __future__ import annotations

import asyncio

import pytest

from engine.runtime.deadline import Deadline


async def test_a_passed_deadline_is_a_timeout_and_leaves_no_cancellation_behind() -> None:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    with pytest.raises(TimeoutError):
        with Deadline(loop, loop.time() + 0.01):
            await asyncio.sleep(5)
    assert me.cancelling() == 0  # (the timer's cancel was taken back)
    await asyncio.sleep(0)  # and nothing is delivered later


async def test_an_answer_in_time_passes_and_the_timer_is_gone() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.08)  # past the deadline: nothing cancels this task now


async def test_a_cancellation_from_outside_stays_one() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def work() -> None:
        with Deadline(loop, loop.time() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_with_the_timer_stays_a_cancellation() -> None:
    """The outside cancel and the deadline in the same turn: the caller's cancel wins."""
    loop = asyncio.get_running_loop()

    async def work() -> None:
        with Deadline(loop, loop.time()):  # (already due: fires on the next turn)
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(5)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(work())


async def test_nested_deadlines_each_raise_for_their_own() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 5):
        with pytest.raises(TimeoutError):
            with Deadline(loop, loop.time() + 0.01):
                await asyncio.sleep(1)
        await asyncio.sleep(0)  # the outer one is still in force and has not fired
