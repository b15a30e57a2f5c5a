"""The request path's Lua scripts on redis-py connections of their own.

redis-py's ``Redis.execute_command`` takes every command through its pool (an asyncio lock, a
readiness check of the socket, observability hooks) and its retry wrapper: about twice the CPU
of the command itself. The scripts a request waits for (the response cache's lookup, the
limiter's admission) go instead over connections the same pool makes (``make_connection``: its
host, TLS, password and timeouts) and this link keeps on a free list, one per caller at a time:
``EVALSHA`` packed and sent, the reply read by redis-py's parser (hiredis when installed).

What redis-py does, it still does: a connection a caller gives up on mid-command (cancelled,
timed out) is closed by redis-py and connects again on its next use. What this link adds: a
script the server does not know (a restart, ``SCRIPT FLUSH``) is sent once as ``EVAL``; a reused
connection found dead is retried once on a new socket, as the client's own retry policy does;
writes nobody waits for (``later``) run as tasks that ``aclose`` finishes; ``run_many`` sends
several scripts in one write.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Call", "Link", "Script"]

T = TypeVar("T")
Arg = str | int | bytes


class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


Call = tuple[Script, Sequence[Arg], Sequence[Arg]]  # a script, its keys, its arguments


class Link:
    """Scripts run on up to ``keep`` idle connections of ``client``'s pool kept for reuse (more
    callers at once each get one more, closed when it comes back to a full list)."""

    def __init__(self, client: aioredis.Redis, *, keep: int = 64) -> None:
        self._pool = client.connection_pool
        self._free: list[AbstractConnection] = []
        self._keep = keep
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closed = False

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The script's reply (redis-py's types: ``bytes``, ``int``, lists), or its exception."""
        return await self._on_a_connection(_eval, script, keys, args)

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several scripts in one write, their replies in one read: the replies in order, or the
        first script's error (after every reply is read). Scripts sent again after a dead reused
        connection must be safe to run twice."""
        return await self._on_a_connection(_eval_many, calls)

    async def _on_a_connection(self, send: Callable[..., Awaitable[T]], *what: Any) -> T:
        free = self._free
        reused = bool(free)
        conn = free.pop() if reused else self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            try:
                return await send(conn, *what)
            except RedisConnectionError:
                if not reused:  # a fresh socket failed: Redis is down, not the socket stale
                    raise
                return await send(conn, *what)  # redis-py closed it: reconnects
        finally:
            if len(free) < self._keep and not self._closed:
                free.append(conn)
            else:
                self.later(conn.disconnect())

    def later(self, work: Awaitable[Any]) -> None:
        """Run ``work`` without waiting for it; ``aclose`` does."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed close or write is the guard's to report, not asyncio's

    async def aclose(self) -> None:
        """Finish the writes in flight, then close the idle connections."""
        self._closed = True
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        free, self._free = self._free, []
        await asyncio.gather(*(conn.disconnect() for conn in free), return_exceptions=True)


async def _eval(conn: AbstractConnection, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
    await conn.send_packed_command(
        conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False
    )
    try:
        return await conn.read_response()
    except NoScriptError:  # EVAL runs it and caches it for the next EVALSHA
        await conn.send_packed_command(
            conn.pack_command("EVAL", script.text, len(keys), *keys, *args), check_health=False
        )
        return await conn.read_response()


async def _eval_many(conn: AbstractConnection, calls: Sequence[Call]) -> list[Any]:
    packed = conn.pack_commands([("EVALSHA", s.sha, len(keys), *keys, *args) for s, keys, args in calls])
    await conn.send_packed_command(packed, check_health=False)
    replies: list[Any] = []
    unknown: list[int] = []  # scripts the server did not know (a restart, SCRIPT FLUSH)
    error: ResponseError | None = None
    for i in range(len(calls)):
        try:
            replies.append(await conn.read_response())
        except NoScriptError:
            replies.append(None)
            unknown.append(i)
        except ResponseError as exc:  # read on: the replies after it belong to this batch
            replies.append(None)
            error = error or exc
    if error is not None:
        raise error
    for i in unknown:  # each sent again alone, as EVAL
        replies[i] = await _eval(conn, *calls[i])
    return replies
