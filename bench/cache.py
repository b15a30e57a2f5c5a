"""The state layer inside ``engine.route()``, measured end to end against the same loopback upstream
as ``overhead.py``: a response-cache hit (memory, Redis), what the uncached path pays for the
state layer (response cache, single-flight, rate limits, a closed circuit) on the memory backend
and on Redis, against the same engine with nothing of it configured; the Redis commands each row
sends per request (``INFO commandstats``, exact); and the outcome of the two-process tests of
issue 13 (one half-open probe across instances, a killed single-flight leader replaced).

Run: ``.venv/bin/python bench/cache.py`` (about 1 minute), ``--quick`` (about 15 s),
``--redis redis://host:port/db`` (else a redis-server is started on a free loopback port; a
shared Redis makes the command counts include the others' traffic), ``--no-tests``.
See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODEL, REQUEST, Upstream, cores, pin, start_upstream
from overhead import Call, Client, Env, Group, RawAiohttp, Report, _us, _x, measure, progress, run
from state import redis_server

from engine.api import Engine
from engine.compiler import compile_text

# One provider on the upstream, the same with rate limits far above what the bench sends (so
# every acquire admits: the cost of counting, not of waiting), and the same behind a circuit
# breaker (every try a success: the cost of a closed circuit). No retries.
ROUTES = """\
version: 1
defaults: {{speed: bench, retry: transient, breaker: none, deadline: 30s}}
speeds:
  bench: {{connect: 5s, read: 30s, pool: 30s, retries: 0, backoff: {{base: 10ms}}}}
breakers:
  bench: {{failures: 5, recovery: 30s}}
cache:
  backend: "{backend}"
{responses}providers:
  up: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench, models: {{{model}: {{}}}}}}
  up_limited: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench,
               limits: {{rpm: 1000000000, tpm: 1000000000000}}, models: {{{model}: {{}}}}}}
  up_guarded: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench, breaker: bench,
               models: {{{model}: {{}}}}}}
routes:
  - {{match: {{model: limited}}, to: up_limited/{model}}}
  - {{match: {{model: guarded}}, to: up_guarded/{model}}}
  - {{match: {{}}, to: up/{model}}}
"""
RESPONSES = "  responses: {ttl: 10m, max_temperature: 0.1}\n"
TEXT = REQUEST["messages"][0]["content"]  # type: ignore[index]
_COUNTER = itertools.count()


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
            counter = _COUNTER  # shared: no two calls of a run send the same message

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
    label, key = "cacheable miss, Redis (lookup+lock, store+unlock)", "miss_redis"
    backend = "redis"


class LimitedRedis(Limited):
    label, key = "limits on, Redis (leased)", "limited_redis"
    backend = "redis"


class Guarded(EngineState):
    label, key = "circuit closed, memory (per try)", "circuit"
    responses = False
    model = "guarded"


class GuardedRedis(Guarded):
    label, key = "circuit closed, Redis (per try)", "circuit_redis"
    backend = "redis"


UNCACHED: list[type[EngineState]] = [Off, NotCacheable, Limited, Miss, MissLimited, Guarded]
HITS: list[type[EngineState]] = [HitMemory, HitRedis]
REDIS: list[type[EngineState]] = [MissRedis, LimitedRedis, GuardedRedis]
ROOT = Path(__file__).resolve().parent.parent


STOP = "bench-cache-stop"


class Monitor:
    """The commands Redis receives from its clients while it runs (``MONITOR``, in a thread),
    by name; the commands scripts run inside Redis are counted apart (``scripted``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: Counter[str] = Counter()
        self.scripted: Counter[str] = Counter()
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor().__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        for cmd in self._monitor.listen():
            words = cmd["command"].split(" ", 2)
            if words[:2] == ["ECHO", STOP]:
                return
            name = words[0].lower()
            (self.scripted if cmd.get("client_type") == "lua" else self.sent)[name] += 1

    def stop(self) -> None:
        with redis.Redis.from_url(self.url) as other:
            other.echo(STOP)
        self._thread.join(10)
        self.sent["hello"] -= 1  # the stop's own connection
        self.sent += Counter()  # (drops the names left at 0)
        self._monitor.__exit__(None, None, None)
        self._client.close()


async def count(env: Env, cls: type[EngineState], n: int) -> Monitor:
    """The Redis commands of ``n`` requests of one row (after its two warm-up calls; the
    background token corrections included: the count waits for them)."""
    client = cls(env)
    call = await client.__aenter__()
    try:
        seen = Monitor(env.routes)
        try:
            for _ in range(n):
                await call()
            await asyncio.sleep(0.2)  # the limiter's corrections go out within 50 ms
        finally:
            seen.stop()
    finally:
        await client.__aexit__(None, None, None)
    return seen


def command_table(env: Env, n: int, rep: Report) -> dict[str, float]:
    """Redis commands sent per request of every row (each one round trip, or part of one when
    pipelined), by name, and the commands Redis runs inside the scripts."""
    rows = [*UNCACHED, *HITS, *REDIS]
    per: dict[str, float] = {}
    rep.out("")
    rep.out(
        f"Redis commands per request ({n} requests per row; exact: MONITOR, which INFO commandstats "
        "agrees with once the commands inside scripts are added)"
    )
    rep.out(f"  {'row':<52} {'sent':>6}  {'in scripts':>10}  by name")
    for cls in rows:
        progress(f"count {cls.label}")
        seen = run("asyncio", count(env, cls, n))
        sent, scripted = seen.sent.total() / n, seen.scripted.total() / n
        per[cls.key] = sent
        names = ", ".join(f"{k} {v / n:.3f}" for k, v in seen.sent.most_common()) or "none"
        rep.out(f"  {cls.label:<52} {sent:>6.3f}  {scripted:>10.3f}  {names}")
    return per


def instance_tests(rep: Report) -> bool:
    """The two-process tests of issue 13, run by pytest: their outcome."""
    progress("two-process tests (pytest)")
    names = "exactly_one_instance_probes or killed_single_flight_leader"
    cmd = [sys.executable, "-m", "pytest", "tests/state/test_state_instances.py", "-k", names]
    cmd += ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [x for x in done.stdout.splitlines() if x.strip()]
    rep.out("")
    rep.out("Two processes on one Redis (tests/state/test_state_instances.py):")
    rep.out("  half-open circuit, 8 concurrent requests on 2 instances: exactly one probe upstream")
    rep.out("  single-flight leader SIGKILLed mid-request: the other instance takes its lock and answers")
    rep.out(
        f"  {'PASS' if done.returncode == 0 else 'FAIL'}  pytest: {lines[-1] if lines else '(no output)'}"
    )
    return done.returncode == 0


def bench(env: Env, n: int, rounds: int, rep: Report) -> dict[str, Any]:
    clients: list[type[Client]] = [RawAiohttp, *UNCACHED, *HITS, *REDIS]
    progress("sequential, interleaved")
    seq, _ = run("asyncio", measure(env, Group([(c, n) for c in clients], warmup=200, rounds=rounds)))
    off = seq["off"]
    w = 52
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
    return seq


def targets(seq: dict[str, Any], per: dict[str, float], rep: Report) -> None:
    """Issue 4's and issue 13's targets, from one run."""
    off = seq["off"].median
    rep.out("")
    rep.out("Targets (one run; the timings are noisy on a shared machine, the command counts exact)")
    hit = seq["hit_memory"].median
    name = "issue 4: a memory hit < 50 us inside route()"
    rep.out(f"  {'PASS' if hit < 50 else 'FAIL'}  {name:<60} {hit:.1f} us")
    worst = max(seq["not_cacheable"].median, seq["limited"].median) / off
    name = "issue 4: not cacheable, cache and limits configured < 1.05x"
    rep.out(f"  {'PASS' if worst < 1.05 else 'FAIL'}  {name:<60} {worst:.2f}x")
    for name, key, limit in (
        ("issue 13: memory cacheable miss <= 1.05x state off", "miss", 1.05),
        ("issue 13: Redis cacheable miss <= 1.6x state off", "miss_redis", 1.6),
        ("issue 13: Redis limits <= 1.5x state off", "limited_redis", 1.5),
        ("issue 13: Redis cache hit <= 0.8x state off", "hit_redis", 0.8),
    ):
        x = seq[key].median / off
        rep.out(f"  {'PASS' if x <= limit else 'FAIL'}  {name:<60} {x:.2f}x ({seq[key].median:,.1f} us)")
    # the round-trip counts allow 0.05 for what runs beside the requests: the token corrections
    # (one per 50 ms), lease renewals, health-check pings, a new pooled connection's HELLO
    for name, key, limit in (
        ("issue 13: Redis miss in <= 2 round trips (+0.05)", "miss_redis", 2.0),
        ("issue 13: Redis hit in 1 round trip (+0.05)", "hit_redis", 1.0),
        ("issue 13: Redis limits in 1 round trip (+0.05)", "limited_redis", 1.0),
        ("issue 13: closed circuit on Redis <= 0.1 commands per try", "circuit_redis", 0.05),
    ):
        if key in per:
            ok = per[key] <= limit + 0.05
            rep.out(f"  {'PASS' if ok else 'FAIL'}  {name:<60} {per[key]:.3f} commands/request")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (about 15 s)")
    p.add_argument("--n", type=int, help="sequential calls per row (default 4000; quick 800)")
    p.add_argument("--upstream", choices=("nginx", "fake"), default="nginx")
    p.add_argument("--redis", help="use this Redis instead of starting one")
    p.add_argument("--no-tests", action="store_true", help="skip the two-process tests")
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
                f"{len(avail)} cores, load {os.getloadavg()[0]:.2f}, redis-py {redis.__version__} "
                f"{'with' if _hiredis() else 'without'} hiredis"
            )
            rep.out(
                f"upstream: {up.describe()}; client "
                f"{'pinned to core ' + str(avail[0]) if pinned else 'not pinned'}; "
                "Redis: loopback redis-server (not pinned)"
            )
            env = Env(up, 0, redis_url)
            seq = bench(env, n, rounds, rep)
            per = command_table(env, 1000, rep)
            targets(seq, per, rep)
        finally:
            up.stop()
    if not args.no_tests:
        instance_tests(rep)
    rep.out(f"\n(run took {time.perf_counter() - t0:.0f} s)")
    return 0


def _hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
