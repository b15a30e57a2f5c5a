"""``redis_link``: the request path's scripts on connections of their own, on a real Redis —
a flushed script cache, several scripts in one write, a connection killed by the server, a caller
cancelled mid-command, more callers at once than connections kept, and the writes nobody waited
for finished by ``aclose``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine.runtime.state.base import Guard
from engine.runtime.state.redis import redis_client
from engine.runtime.state.redis_flights import RedisFlights
from engine.runtime.state.redis_link import Link, Script

ECHO = Script("return {KEYS[1], ARGV[1]}")
SLOW = Script(
    "local t = redis.call('TIME') while true do local u = redis.call('TIME') "
    "if (u[1] - t[1]) * 1000000 + u[2] - t[2] > 30000 then return 1 end end"
)


async def _with(url: str, body: Any) -> Any:
    client = redis_client(url)
    link = Link(client, keep=2)
    try:
        return await body(client, link)
    finally:
        await link.aclose()
        await client.aclose()


async def test_a_script_runs_and_its_connection_is_reused(redis_url: str) -> None:
    async def body(client: aioredis.Redis, link: Link) -> None:
        assert await link.run(ECHO, ["k"], ["v"]) == [b"k", b"v"]
        assert await link.run(ECHO, ["k2"], [7]) == [b"k2", b"7"]
        clients = await client.client_list()
        # the pool's own connection (client_list) and the link's one: the second call reused it
        assert len(clients) == 2

    await _with(redis_url, body)


async def test_a_flushed_script_cache_costs_one_eval(redis_url: str) -> None:
    async def body(client: aioredis.Redis, link: Link) -> None:
        await link.run(ECHO, ["a"], ["1"])
        await client.script_flush()
        assert await link.run(ECHO, ["b"], ["2"]) == [b"b", b"2"]  # NOSCRIPT, then EVAL
        assert (await client.script_exists(ECHO.sha)) == [True]  # EVAL cached it again

    await _with(redis_url, body)


async def test_many_scripts_go_in_one_write_and_an_error_leaves_the_connection_in_step(
    redis_url: str,
) -> None:
    failing = Script("return redis.error_reply('nope')")

    async def body(client: aioredis.Redis, link: Link) -> None:
        calls = [(ECHO, ["a"], ["1"]), (ECHO, ["b"], ["2"])]
        assert await link.run_many(calls) == [[b"a", b"1"], [b"b", b"2"]]
        await client.script_flush()  # every one unknown: each sent again as EVAL
        assert await link.run_many(calls) == [[b"a", b"1"], [b"b", b"2"]]
        with pytest.raises(aioredis.ResponseError, match="nope"):
            await link.run_many([(ECHO, ["c"], ["3"]), (failing, [], []), (ECHO, ["d"], ["4"])])
        assert await link.run(ECHO, ["e"], ["5"]) == [b"e", b"5"]  # no reply of the batch left behind

    await _with(redis_url, body)


async def test_a_connection_killed_by_the_server_is_replaced(redis_url: str) -> None:
    async def body(client: aioredis.Redis, link: Link) -> None:
        await link.run(ECHO, ["a"], ["1"])
        killed = await client.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        assert await link.run(ECHO, ["b"], ["2"]) == [b"b", b"2"]  # one retry, a new socket

    await _with(redis_url, body)


async def test_a_caller_cancelled_mid_command_leaves_no_reply_behind(redis_url: str) -> None:
    async def body(client: aioredis.Redis, link: Link) -> None:
        slow = asyncio.ensure_future(link.run(SLOW, [], []))
        await asyncio.sleep(0.005)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # the same connection again: the slow script's reply must not answer this call
        assert await link.run(ECHO, ["after"], ["x"]) == [b"after", b"x"]

    await _with(redis_url, body)


async def test_more_callers_than_kept_connections(redis_url: str) -> None:
    async def body(client: aioredis.Redis, link: Link) -> None:
        answers = await asyncio.gather(*(link.run(ECHO, [f"k{i}"], [i]) for i in range(10)))
        assert answers == [[f"k{i}".encode(), str(i).encode()] for i in range(10)]
        await asyncio.sleep(0.05)  # the extra connections are closed in the background
        assert len(await client.client_list()) <= 1 + 2  # the pool's own and the two kept

    await _with(redis_url, body)


class _Texts:
    ttl: float | None = 60.0

    def dumps(self, value: str) -> str:
        return value

    def loads(self, data: bytes | str) -> str | None:
        return data.decode() if isinstance(data, bytes) else data


async def test_a_leaders_store_lands_after_its_answer_and_before_aclose(redis_url: str) -> None:
    client = redis_client(redis_url)
    flights = RedisFlights(client, Guard(), values="t:resp:", locks="t:flight:")

    async def call() -> str:
        return "the answer"

    assert await flights.run("k", call, _Texts()) == "the answer"
    await flights.aclose()  # waits for the store nobody awaited
    assert await client.get("t:resp:k") == b"the answer"
    assert await client.get("t:flight:k") is None  # and the lock is gone with it
    await client.aclose()


async def test_a_failed_leader_lets_go_of_its_lock(redis_url: str) -> None:
    client = redis_client(redis_url)
    flights = RedisFlights(client, Guard(), values="t:resp:", locks="t:flight:")

    async def call() -> str:
        raise RuntimeError("upstream failed")

    with pytest.raises(RuntimeError):
        await flights.run("k", call, _Texts())
    await flights.aclose()
    assert await client.get("t:flight:k") is None
    assert await client.get("t:resp:k") is None
    await client.aclose()
