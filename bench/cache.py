"""The state layer inside ``engine.route()``, measured end to end against the same loopback upstream
as ``overhead.py``: a response-cache hit (memory, Redis), and what the uncached path pays for the
state layer (response cache, single-flight, rate limits) with the memory backend, against the same
engine with nothing of it configured.

Run: ``.venv/bin/python bench/cache.py`` (about 1 minute), ``--quick`` (about 15 s),
``--redis redis://host:port/db`` (else a redis-server is started on a free loopback port).
See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODEL, REQUEST, Upstream, cores, pin, start_upstream
from overhead import Call, Client, Env, Group, RawAiohttp, Report, _us, _x, measure, progress, run
from state import redis_server

from engine.api import Engine
from engine.compiler import compile_text

# One provider on the upstream, and the same with rate limits far above what the bench sends (so
# every acquire admits: the cost of counting, not of waiting). No retries, no breaker.
ROUTES = """\
version: 1
defaults: {{speed: bench, retry: transient, breaker: none, deadline: 30s}}
speeds:
  bench: {{connect: 5s, read: 30s, pool: 30s, retries: 0, backoff: {{base: 10ms}}}}
cache:
  backend: "{backend}"
{responses}providers:
  up: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench, models: {{{model}: {{}}}}}}
  up_limited: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench,
               limits: {{rpm: 1000000000, tpm: 1000000000000}}, models: {{{model}: {{}}}}}}
routes:
  - {{match: {{model: limited}}, to: up_limited/{model}}}
  - {{match: {{}}, to: up/{model}}}
"""
RESPONSES = "  responses: {ttl: 10m, max_temperature: 0.1}\n"
TEXT = REQUEST["messages"][0]["content"]  # type: ignore[index]


class EngineState(Client):
    """``engine.route()`` on ROUTES; every call a new request (``unique``) or the same one."""

    backend = "memory"
    responses = True  # cache.responses written
    model = MODEL
    temperature = 0.0
    unique = True  # a different message per call (a cache miss when cacheable)
    expect_cached = False

    async def __aenter__(self) -> Call:
        url = self.env.routes or "memory"  # the Redis URL travels in env.routes
        backend = url if self.backend == "redis" else "memory"
        text = ROUTES.format(
            backend=backend, responses=RESPONSES if self.responses else "", url=self.env.up.url, model=MODEL
        )
        self.engine = Engine.from_graph(compile_text(text))
        route = self.engine.route
        base = {**REQUEST, "model": self.model, "temperature": self.temperature}
        if self.unique:
            counter = itertools.count()

            async def call() -> Any:
                # same length every call: "Say hello. 000000123"
                msg = {"role": "user", "content": f"{TEXT} {next(counter):09d}"}
                return await route({**base, "messages": [msg]})
        else:
            fixed = {**base, "messages": [{"role": "user", "content": TEXT}]}

            async def call() -> Any:
                return await route(fixed)

        first = await call()
        second = await call()
        # nginx answers one fixed text; the fake echoes the message (unique: with its number)
        if second.cached != self.expect_cached or not (
            first.text == self.env.up.answer or first.text.startswith(f"echo: {TEXT}")
        ):
            raise AssertionError(f"{self.label}: unexpected answer {second!r}")
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.aclose()


class Off(EngineState):
    label, key = "state off: no cache.responses, no limits", "off"
    responses = False


class NotCacheable(EngineState):
    label, key = "cache.responses on, temperature above max", "not_cacheable"
    temperature = 1.0


class Limited(EngineState):
    label, key = "limits on (rpm + tpm, memory)", "limited"
    responses = False
    model = "limited"


class Miss(EngineState):
    label, key = "cacheable, every call a miss (get+flight+set)", "miss"


class MissLimited(EngineState):
    label, key = "cacheable miss + limits", "miss_limited"
    model = "limited"


class HitMemory(EngineState):
    label, key = "cache hit, memory", "hit_memory"
    unique = False
    expect_cached = True


class HitRedis(HitMemory):
    label, key = "cache hit, Redis (loopback)", "hit_redis"
    backend = "redis"


class MissRedis(EngineState):
    label, key = "cacheable miss, Redis (get+lock+set+unlock)", "miss_redis"
    backend = "redis"


class LimitedRedis(Limited):
    label, key = "limits on, Redis (one script call)", "limited_redis"
    backend = "redis"


UNCACHED: list[type[EngineState]] = [Off, NotCacheable, Limited, Miss, MissLimited]
HITS: list[type[EngineState]] = [HitMemory, HitRedis]
REDIS: list[type[EngineState]] = [MissRedis, LimitedRedis]


def bench(env: Env, n: int, rounds: int, rep: Report) -> None:
    clients: list[type[Client]] = [RawAiohttp, *UNCACHED, *HITS, *REDIS]
    progress("sequential, interleaved")
    seq, _ = run("asyncio", measure(env, Group([(c, n) for c in clients], warmup=200, rounds=rounds)))
    off = seq["off"]
    w = 48
    rep.out("")
    rep.out(
        f"engine.route(), sequential: {n} calls per row after a warm-up, {rounds} interleaved "
        "rounds, in microseconds"
    )
    rep.out(f"{'row':<{w}} {'median':>8} {'p99':>8} {'cpu/req':>8} {'vs off':>7} {'cpu vs off':>11}")
    for cls in clients:
        s = seq[cls.key]
        rep.out(
            f"{cls.label:<{w}} {s.median:>8,.1f} {_us(s.p99):>8} {_us(s.cpu):>8} "
            f"{_x(s.median, off.median):>7} {_x(s.cpu, off.cpu):>11}"
        )
    rep.out(
        "  uncached rows send a new message every call (same length); hit rows the same request every call"
    )
    rep.out(
        "  'state off' is the engine with nothing of the state layer configured: what the "
        "state layer adds on the request path is then two attribute tests"
    )

    hit = seq["hit_memory"].median
    rep.out("")
    rep.out(
        "Targets (issue 4, item 7): a memory hit < 50 us inside route(); the uncached path pays "
        "< 5 % for the state layer (memory)"
    )
    rep.out(f"  {'PASS' if hit < 50 else 'FAIL'}  {'memory cache hit inside route()':<58} {hit:.1f} us")
    for name, rows in (
        ("not cacheable, with cache.responses and limits configured", [NotCacheable, Limited]),
        ("cacheable but a miss (lookup, single-flight, store)", [Miss, MissLimited]),
    ):
        worst = max(rows, key=lambda c: seq[c.key].median)
        ratio = seq[worst.key].median / off.median - 1
        cpu = max((seq[c.key].cpu or 0) for c in rows) / (off.cpu or 1) - 1
        rep.out(
            f"  {'PASS' if ratio < 0.05 else 'FAIL'}  {name:<58} {100 * ratio:+.1f} % "
            f"(cpu {100 * cpu:+.1f} %)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (about 15 s)")
    p.add_argument("--n", type=int, help="sequential calls per row (default 4000; quick 800)")
    p.add_argument("--upstream", choices=("nginx", "fake"), default="nginx")
    p.add_argument("--redis", help="use this Redis instead of starting one")
    args = p.parse_args(argv)
    n = args.n or (800 if args.quick else 4000)
    rounds = 2 if args.quick else 4
    t0 = time.perf_counter()
    avail = cores()
    upstream_core = avail[1] if len(avail) > 1 else None
    with redis_server(args.redis) as redis_url:
        up: Upstream = start_upstream(upstream_core, prefer=args.upstream)
        pinned = pin(avail[0])
        try:
            rep = Report()
            rep.out(
                f"state layer in engine.route(): Python {platform.python_version()}, "
                f"{len(avail)} cores, load {os.getloadavg()[0]:.2f}"
            )
            rep.out(
                f"upstream: {up.describe()}; client "
                f"{'pinned to core ' + str(avail[0]) if pinned else 'not pinned'}; "
                "Redis: loopback redis-server (not pinned)"
            )
            bench(Env(up, 0, redis_url), n, rounds, rep)
            rep.out(f"\n(run took {time.perf_counter() - t0:.0f} s)")
        finally:
            up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
