"""The state layer's costs in, a table out: cache hit latency (memory, Redis), the uncached path,
limiter acquire (memory, Redis), a try on a closed circuit (memory, Redis) and a 20-provider model
registry listing cold vs warm.

Run: ``.venv/bin/python bench/state.py [--n 20000] [--redis redis://host:port/db] [--uvloop]``.
Without ``--redis`` a redis-server is started on a free loopback port (and stopped at the end).
Figures are per operation: median and p99 of individually timed calls, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from engine.compiler import compile_text
from engine.fake import FakeServer
from engine.graph import Breaker, CacheConfig, Provider
from engine.providers import get_kind
from engine.result import Response, Usage
from engine.runtime.breakers import Circuits
from engine.runtime.state import State
from engine.values import Secret

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise this paragraph. " * 30},
        ],
    }
).encode()
ANSWER = Response(
    text="a short answer " * 10,
    provider="openai",
    model="gpt-4o-mini",
    finish_reason="stop",
    usage=Usage(200, 40),
    cost=0.00005,
)
REQUEST = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "hi"}], "metadata": {}}

ns = time.perf_counter_ns


def row(name: str, samples: list[int]) -> str:
    us = sorted(s / 1000 for s in samples)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    return f"{name:<46} {statistics.median(us):>9.2f} {p99:>9.2f} {len(us):>8}"


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> list[int]:
    for i in range(min(n // 10, 1000)):  # warm up
        await fn(i)
    out = []
    for i in range(n):
        t = ns()
        await fn(i)
        out.append(ns() - t)
    return out


def sync_timed(n: int, fn: Callable[[], Any]) -> list[int]:
    out = []
    for _ in range(n):
        t = ns()
        fn()
        out.append(ns() - t)
    return out


async def upstream() -> Response:
    return ANSWER


async def cache_rows(label: str, backend: str, n: int) -> list[str]:
    state = State.create(CacheConfig(backend=backend, responses_ttl=600, max_temperature=0.1))
    rows = []
    try:
        await state.responses.clear()
        key = state.responses.key("openai/gpt-4o-mini", BODY)
        await state.responses.set(key, ANSWER)
        rows.append(row(f"{label}: cache get (hit)", await timed(n, lambda i: state.responses.get(key))))
        rows.append(
            row(
                f"{label}: respond() hit: sha256 key + get",
                await timed(n, lambda i: state.respond("openai/gpt-4o-mini", BODY, upstream)),
            )
        )
        rows.append(
            row(
                f"{label}: respond() miss, no-op call",
                await timed(n, lambda i: state.respond(f"openai/{i}", BODY, upstream)),
            )
        )
        await state.responses.clear()
    finally:
        await state.aclose()
    return rows


async def limiter_rows(label: str, backend: str, n: int, provider: Provider) -> list[str]:
    state = State.create(CacheConfig(backend=backend))
    try:
        return [
            row(
                f"{label}: limiter acquire (admitted)",
                await timed(n, lambda i: state.limiter.acquire(provider, 100)),
            )
        ]
    finally:
        await state.aclose()


async def circuit_rows(label: str, backend: str, n: int) -> list[str]:
    state = State.create(CacheConfig(backend=backend))
    circuits = Circuits(state.breaker_factory())
    breaker = Breaker("bench", failures=5, recovery=30)

    async def one(i: int) -> None:
        token = await circuits.enter("openai", breaker)
        await circuits.leave(token, False)

    try:
        return [row(f"{label}: closed circuit, enter + leave", await timed(n, one))]
    finally:
        await state.aclose()


def _reveal(v: str | Secret | None) -> str | None:
    return v.reveal() if isinstance(v, Secret) else v


async def registry_rows(backend: str, rounds: int) -> list[str]:
    async with FakeServer() as fake, httpx.AsyncClient(timeout=5) as client:
        lines = ["version: 1", "providers:"]
        for i in range(20):
            lines += [
                f"  p{i}:",
                "    kind: openai",
                f"    base_url: {fake.base_url('openai', f'p{i}')}",
                "    api_key: ${K}",
            ]
        lines += ["routes:", "  - match: {}", "    to: p0"]
        graph = compile_text("\n".join(lines) + "\n", base_dir=ROOT, env={"K": "sk-bench"})
        providers = list(graph.providers.values())

        async def fetch(p: Provider, url: str) -> Any:
            r = await client.get(url, headers=get_kind(p.kind).auth_headers(_reveal(p.api_key)))
            r.raise_for_status()
            return r.json()

        label = "memory" if backend == "memory" else "redis"
        state = State.create(CacheConfig(backend=backend), fetch=fetch)
        cold, warm = [], []
        try:
            for _ in range(rounds):
                await state.registry.clear()
                t = ns()
                out = await state.registry.list_models_many(providers, max_concurrency=10)
                cold.append(ns() - t)
                assert all(not isinstance(v, Exception) for v in out.values()), out
                t = ns()
                await state.registry.list_models_many(providers, max_concurrency=10)
                warm.append(ns() - t)
        finally:
            await state.registry.clear()
            await state.aclose()
        return [
            row(f"{label}: registry 20 providers cold", cold),
            row(f"{label}: registry 20 providers warm", warm),
        ]


async def main(args: argparse.Namespace, redis_url: str) -> None:
    graph = compile_text(
        "version: 1\nproviders:\n  big:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n"
        "    limits: {rpm: 1000000000, tpm: 1000000000000}\nroutes:\n  - match: {}\n    to: big\n",
        base_dir=ROOT,
        env={},
    )
    big = graph.providers["big"]
    state = State.create(CacheConfig(backend="memory", responses_ttl=600, max_temperature=0.1))
    print(f"{'operation':<46} {'median us':>9} {'p99 us':>9} {'n':>8}")
    print(
        row("cache_policy() on a cacheable request", sync_timed(args.n, lambda: state.cache_policy(REQUEST)))
    )
    n_redis = max(args.n // 10, 500)
    for line in await cache_rows("memory", "memory", args.n):
        print(line)
    for line in await cache_rows("redis", redis_url, n_redis):
        print(line)
    for line in await limiter_rows("memory", "memory", args.n, big):
        print(line)
    for line in await limiter_rows("redis", redis_url, n_redis, big):
        print(line)
    for line in await circuit_rows("memory", "memory", args.n):
        print(line)
    for line in await circuit_rows("redis", redis_url, args.n):
        print(line)
    for backend in ("memory", redis_url):
        for line in await registry_rows(backend, args.rounds):
            print(line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (bash .ci/setup dev installs it), or pass --redis URL")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="timed calls per memory row")
    parser.add_argument("--rounds", type=int, default=20, help="registry cold/warm rounds")
    parser.add_argument("--redis", help="use this Redis instead of starting one")
    parser.add_argument("--uvloop", action="store_true")
    ns_args = parser.parse_args()
    with redis_server(ns_args.redis) as url:
        if ns_args.uvloop:
            import uvloop

            uvloop.run(main(ns_args, url))
        else:
            asyncio.run(main(ns_args, url))
