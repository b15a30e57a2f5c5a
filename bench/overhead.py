"""The engine's overhead, measured: one loopback upstream in, one table of latencies, throughputs
and ratios (against raw httpx and raw aiohttp) with the issue's targets marked PASS/FAIL out.

Run: ``.venv/bin/python bench/overhead.py`` (about 2 minutes), ``--quick`` (about 30 s),
``--profile`` (pyinstrument over sequential ``engine.route()``, hot spots with their share),
``--telemetry`` (only the telemetry rows and bench/recorder.py's in-process rows, ~10 s);
``--spin --telemetry-on traces`` under py-spy profiles the engine with telemetry on.
See ``bench/README.md`` for what every number means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import httpx
from common import (
    BODY,
    HEADERS,
    MODEL,
    REQUEST,
    STREAM_BODY,
    STREAM_CHUNKS,
    Stats,
    Upstream,
    cores,
    pin,
    start_upstream,
)
from httpx_aiohttp import AiohttpTransport

from engine.api import Engine
from engine.compiler import compile_text
from engine.fake import refused_port

try:
    import uvloop
except ImportError:  # pragma: no cover - optional
    uvloop = None  # type: ignore[assignment]

ns = time.perf_counter_ns
Call = Callable[[], Awaitable[Any]]

# One provider on the upstream, one on its SSE path, one that refuses connections (with and
# without a breaker). No retries on the same target, so a failover costs exactly one refused
# connect; the plain route is the same target with nothing in front of it. Telemetry is off
# (the earlier targets hold with it off); the telemetry rows turn it on.
ROUTES = """\
version: 1
defaults: {{speed: bench, retry: transient, breaker: none, deadline: 30s}}
telemetry: {{metrics: false}}
speeds:
  bench: {{connect: 5s, read: 30s, pool: 30s, retries: 0, backoff: {{base: 10ms}}}}
breakers:
  bench: {{failures: 5, recovery: 10m}}
providers:
  up: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench, models: {{{model}: {{}}}}}}
  up_breaker: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench, breaker: standard,
               models: {{{model}: {{}}}}}}
  sse: {{kind: openai, base_url: "{stream_url}/v1", api_key: sk-bench,
        headers: {stream_headers}, models: {{{model}: {{}}}}}}
  dead: {{kind: openai, base_url: "http://127.0.0.1:{refused}/v1", api_key: sk-bench,
         models: {{{model}: {{}}}}}}
  dead_breaker: {{kind: openai, base_url: "http://127.0.0.1:{refused}/v1", api_key: sk-bench,
                 breaker: bench, models: {{{model}: {{}}}}}}
groups:
  failover: {{strategy: priority, targets: [dead/{model}, up/{model}]}}
  failover_breaker: {{strategy: priority, targets: [dead_breaker/{model}, up/{model}]}}
routes:
  - {{match: {{model: failover}}, to: failover}}
  - {{match: {{model: failover_breaker}}, to: failover_breaker}}
  - {{match: {{model: stream}}, to: sse/{model}}}
  - {{match: {{model: breaker}}, to: up_breaker/{model}}}
  - {{match: {{}}, to: up/{model}}}
"""


# -- configuration ------------------------------------------------------------------------------


@dataclass
class Plan:
    warmup: int = 200
    n: int = 2000
    seconds: float = 1.0  # per round: 4 rounds
    levels: tuple[int, ...] = (50, 200)
    stream_n: int = 1000
    litellm_n: int = 1000  # LiteLLM is ~10x slower: fewer sequential samples
    litellm_failover_n: int = 200
    uvloop_n: int = 2000
    uvloop_seconds: float = 1.0
    rounds: int = 4
    loop: str = "asyncio"
    litellm_rates: bool = True  # LiteLLM's throughput and stream rows (slow: off in --quick)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            warmup=100,
            n=400,
            seconds=0.3,
            stream_n=150,
            litellm_n=100,
            litellm_failover_n=40,
            uvloop_n=400,
            uvloop_seconds=0.3,
            rounds=2,
            litellm_rates=False,
        )


@dataclass
class Env:
    up: Upstream
    refused: int
    routes: str
    litellm: Any = None  # the module, when importable
    notes: list[str] = field(default_factory=list)

    @property
    def chat_url(self) -> str:
        return self.up.url + "/v1/chat/completions"

    @property
    def stream_chat_url(self) -> str:
        return self.up.stream_url + "/v1/chat/completions"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        assert uvloop is not None
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(name: str, coro: Awaitable[Any]) -> Any:
    """Run one phase on a fresh event loop of kind ``name``."""
    gc.collect()
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


# -- clients: each an async context manager yielding ``call`` (one complete request) -----------


class Client:
    label = ""
    key = ""

    def __init__(self, env: Env) -> None:
        self.env = env

    async def __aenter__(self) -> Call:
        raise NotImplementedError

    async def __aexit__(self, *exc: object) -> None:
        pass


def _check(data: Any, env: Env) -> None:
    if data["choices"][0]["message"]["content"] != env.up.answer:
        raise AssertionError(f"unexpected answer: {data!r}")


class RawHttpx(Client):
    label, key = "raw httpx", "httpx"

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    async def __aenter__(self) -> Call:
        self.client = httpx.AsyncClient(transport=self.transport())
        client, url = self.client, self.env.chat_url

        async def call() -> Any:
            r = await client.post(url, content=BODY, headers=HEADERS)
            r.raise_for_status()
            return r.json()

        _check(await call(), self.env)
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


class HttpxAiohttp(RawHttpx):
    label, key = "httpx + aiohttp transport", "httpx_aiohttp"

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return AiohttpTransport()


class RawAiohttp(Client):
    label, key = "raw aiohttp", "aiohttp"

    async def __aenter__(self) -> Call:
        self.session = aiohttp.ClientSession()
        session, url = self.session, self.env.chat_url
        loads = json.loads

        async def call() -> Any:
            async with session.post(url, data=BODY, headers=HEADERS) as r:
                r.raise_for_status()
                return loads(await r.read())

        _check(await call(), self.env)
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()


class EngineRoute(Client):
    label, key = "engine.route()", "engine"
    transport: str | None = None
    model = MODEL
    telemetry: str | None = None  # another telemetry: section than the routes' (metrics off)

    def options(self) -> dict[str, Any]:
        return {}

    async def __aenter__(self) -> Call:
        routes = self.env.routes
        if self.telemetry is not None:
            routes = routes.replace("telemetry: {metrics: false}", self.telemetry)
        self.engine = Engine.from_graph(compile_text(routes), transport=self.transport, **self.options())
        route, request = self.engine.route, {**REQUEST, "model": self.model}

        async def call() -> Any:
            return await route(request)

        resp = await call()
        if resp.text != self.env.up.answer:
            raise AssertionError(f"unexpected answer: {resp!r}")
        return call

    async def __aexit__(self, *exc: object) -> None:
        OVERHEAD[self.key] = _overhead(self.engine.metrics())
        await self.engine.aclose()


# client key -> (mean engine_overhead_seconds of its routed requests in us, count), read from the
# engine's own histogram before it closes (metrics on only)
OVERHEAD: dict[str, tuple[float, int]] = {}


def _overhead(metrics: dict[str, dict[str, float]]) -> tuple[float, int]:
    total = metrics.get("engine_overhead_seconds_sum", {}).get("mode=route", 0.0)
    count = int(metrics.get("engine_overhead_seconds_count", {}).get("mode=route", 0))
    return (total / count * 1e6 if count else 0.0), count


class EngineRouteMetrics(EngineRoute):
    label, key = "engine.route() [metrics on]", "engine_metrics"
    telemetry = "telemetry: {metrics: true}"


class _NoExport:
    """An OpenTelemetry span exporter that drops every span (the SDK's work, no I/O)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class EngineRouteTraces(EngineRoute):
    """Traces as a production user sets them up: the SDK's ``BatchSpanProcessor`` (spans queued,
    exported from its own thread), here with an exporter that drops them."""

    label, key = "engine.route() [metrics + traces, batch]", "engine_traces"
    telemetry = "telemetry: {metrics: true, traces: true}"

    def options(self) -> dict[str, Any]:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(_NoExport()))  # type: ignore[arg-type]
        return {"tracer_provider": self.provider}

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        self.provider.shutdown()


class EngineRouteHttpxAiohttp(EngineRoute):
    label, key = "engine.route() [transport=httpx-aiohttp]", "engine_httpx_aiohttp"
    transport = "httpx-aiohttp"


class EngineRouteBreaker(EngineRoute):
    label, key = "engine.route() [breaker: standard]", "engine_breaker"
    model = "breaker"


class EngineFailover(EngineRoute):
    label, key = "engine.route() failover, breaker: none", "engine_failover"
    model = "failover"


class EngineFailoverBreaker(EngineRoute):
    label, key = "engine.route() failover, breaker on", "engine_failover_breaker"
    model = "failover_breaker"


class RawAiohttpFailover(Client):
    """The floor of a failover: a refused connect, then the request on the live upstream."""

    label, key = "raw aiohttp: refused connect + request", "aiohttp_failover"

    async def __aenter__(self) -> Call:
        self.session = aiohttp.ClientSession()
        session, url = self.session, self.env.chat_url
        dead = f"http://127.0.0.1:{self.env.refused}/v1/chat/completions"
        loads = json.loads

        async def call() -> Any:
            try:
                async with session.post(dead, data=BODY, headers=HEADERS) as r:
                    await r.read()
            except aiohttp.ClientConnectorError:
                pass
            else:
                raise AssertionError("the dead port answered")
            async with session.post(url, data=BODY, headers=HEADERS) as r:
                r.raise_for_status()
                return loads(await r.read())

        _check(await call(), self.env)
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()


class LiteLLMRouter(Client):
    label, key = "LiteLLM Router", "litellm"
    failover = False

    async def __aenter__(self) -> Call:
        litellm = self.env.litellm
        params = {"model": f"openai/{MODEL}", "api_base": self.env.up.url + "/v1", "api_key": "sk-bench"}
        dead = {**params, "api_base": f"http://127.0.0.1:{self.env.refused}/v1"}
        model_list = [{"model_name": "live", "litellm_params": params}]
        kwargs: dict[str, Any] = {}
        name = "live"
        if self.failover:
            model_list.append({"model_name": "dead", "litellm_params": dead})
            kwargs = {"fallbacks": [{"dead": ["live"]}], "disable_cooldowns": True}
            name = "dead"
        self.router = litellm.Router(model_list=model_list, num_retries=0, **kwargs)
        router, messages = self.router, REQUEST["messages"]

        async def call() -> Any:
            return await router.acompletion(model=name, messages=messages, temperature=0, max_tokens=64)

        resp = await call()
        if resp.choices[0].message.content != self.env.up.answer:
            raise AssertionError(f"unexpected answer: {resp!r}")
        return call


class LiteLLMFailover(LiteLLMRouter):
    label, key = "LiteLLM Router fallback (no cooldown)", "litellm_failover"
    failover = True


# -- streams: each call reads one whole 50-chunk stream ---------------------------------------


class StreamHttpx(Client):
    label, key = "raw httpx: aiter_lines + json.loads", "httpx"

    async def __aenter__(self) -> Call:
        self.client = httpx.AsyncClient()
        client, url = self.client, self.env.stream_chat_url
        headers = {**HEADERS, **self.env.up.stream_headers}
        loads = json.loads

        async def call() -> int:
            n = 0
            async with client.stream("POST", url, content=STREAM_BODY, headers=headers) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        for choice in loads(line[6:])["choices"]:
                            if choice["delta"].get("content"):
                                n += 1
            return n

        got = await call()
        if got != STREAM_CHUNKS:
            raise AssertionError(f"{got} chunks, expected {STREAM_CHUNKS}")
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


class StreamAiohttp(Client):
    label, key = "raw aiohttp: readline + json.loads", "aiohttp"

    async def __aenter__(self) -> Call:
        self.session = aiohttp.ClientSession()
        session, url = self.session, self.env.stream_chat_url
        headers = {**HEADERS, **self.env.up.stream_headers}
        loads = json.loads

        async def call() -> int:
            n = 0
            async with session.post(url, data=STREAM_BODY, headers=headers) as r:
                r.raise_for_status()
                async for raw in r.content:
                    if raw.startswith(b"data: ") and not raw.startswith(b"data: [DONE]"):
                        for choice in loads(raw[6:])["choices"]:
                            if choice["delta"].get("content"):
                                n += 1
            return n

        got = await call()
        if got != STREAM_CHUNKS:
            raise AssertionError(f"{got} chunks, expected {STREAM_CHUNKS}")
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()


class StreamEngine(EngineRoute):
    label, key = "engine.stream()", "engine"

    async def __aenter__(self) -> Call:
        self.engine = Engine.from_graph(compile_text(self.env.routes), transport=self.transport)
        stream, request = self.engine.stream, {**REQUEST, "model": "stream"}

        async def call() -> int:
            n = 0
            async with stream(request) as events:
                async for event in events:
                    if type(event).__name__ == "TextDelta":
                        n += 1
            return n

        got = await call()
        if got != STREAM_CHUNKS:
            raise AssertionError(f"{got} chunks, expected {STREAM_CHUNKS}")
        return call


class StreamLiteLLM(LiteLLMRouter):
    label, key = "LiteLLM Router, stream=True", "litellm"

    async def __aenter__(self) -> Call:
        litellm = self.env.litellm
        params = {
            "model": f"openai/{MODEL}",
            "api_base": self.env.up.stream_url + "/v1",
            "api_key": "sk-bench",
        }
        if self.env.up.stream_headers:
            params["extra_headers"] = self.env.up.stream_headers
        self.router = litellm.Router(
            model_list=[{"model_name": "live", "litellm_params": params}], num_retries=0
        )
        router, messages = self.router, REQUEST["messages"]

        async def call() -> int:
            n = 0
            resp = await router.acompletion(
                model="live", messages=messages, temperature=0, max_tokens=64, stream=True
            )
            async for chunk in resp:
                if chunk.choices and chunk.choices[0].delta.content:
                    n += 1
            return n

        got = await call()
        if got != STREAM_CHUNKS:
            raise AssertionError(f"{got} chunks, expected {STREAM_CHUNKS}")
        return call


# -- measurements -------------------------------------------------------------------------------


async def _seq_chunk(call: Call, n: int, out: list[int]) -> int:
    """``n`` sequential calls, each timed into ``out``; returns the thread's CPU time spent."""
    cpu = time.thread_time_ns()
    for _ in range(n):
        t = ns()
        await call()
        out.append(ns() - t)
    return time.thread_time_ns() - cpu


async def _rate(call: Call, concurrency: int, seconds: float) -> tuple[float, int]:
    """Completed calls per second with ``concurrency`` workers; also the error count."""
    done = errors = 0
    stop = False

    async def worker() -> None:
        nonlocal done, errors
        while not stop:
            try:
                await call()
            except asyncio.CancelledError:
                raise
            except Exception:
                errors += 1
            else:
                done += 1

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(min(0.3, seconds / 3))  # open the connections, fill the pools
    d0, t0 = done, time.perf_counter()
    await asyncio.sleep(seconds)
    d1, t1 = done, time.perf_counter()
    stop = True
    for task in tasks:  # do not wait for the slowest clients to drain
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (d1 - d0) / (t1 - t0), errors


@dataclass
class Group:
    """Clients measured side by side on one event loop, interleaved in rounds (each round in a
    rotated order) so that a noisy neighbour or a slow drift hits all of them alike."""

    clients: list[tuple[type[Client], int]]  # (client, sequential calls in total; 0: none)
    levels: tuple[int, ...] = ()
    seconds: float = 0.0  # per throughput measurement; the best of the rounds is kept
    warmup: int = 100
    rounds: int = 4
    no_rate: frozenset[str] = frozenset()  # clients whose throughput is not measured


async def measure(
    env: Env, group: Group
) -> tuple[dict[str, Stats], dict[tuple[str, int], tuple[float, int]]]:
    from contextlib import AsyncExitStack

    seq: dict[str, list[int]] = {}
    cpu: dict[str, int] = {}
    rates: dict[tuple[str, int], tuple[float, int]] = {}
    async with AsyncExitStack() as stack:
        calls: list[tuple[str, Call, int]] = []
        for cls, n in group.clients:
            progress(f"open {cls.label}")
            call = await stack.enter_async_context(cls(env))
            calls.append((cls.key, call, n))
        for _key, call, n in calls:
            for _ in range(min(group.warmup, max(10, n // 4))):
                await call()
        order = list(range(len(calls)))
        for r in range(group.rounds):
            rot = order[r % len(order) :] + order[: r % len(order)]
            for i in rot:
                key, call, n = calls[i]
                if n:
                    spent = await _seq_chunk(call, -(-n // group.rounds), seq.setdefault(key, []))
                    cpu[key] = cpu.get(key, 0) + spent
        for c in group.levels:
            for r in range(group.rounds):
                rot = order[r % len(order) :] + order[: r % len(order)]
                for i in rot:
                    key, call, _ = calls[i]
                    if key in group.no_rate:
                        continue
                    progress(f"c={c} round {r + 1}/{group.rounds} {key}")
                    rate, errors = await _rate(call, c, group.seconds)
                    best, errs = rates.get((key, c), (0.0, 0))
                    rates[key, c] = (max(best, rate), errs + errors)
    return {k: Stats.of(v, cpu[k]) for k, v in seq.items()}, rates


# -- the table ----------------------------------------------------------------------------------


def _x(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _pct(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{100 * value / base:.0f}%"


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def out(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


_T0 = time.perf_counter()


def progress(text: str) -> None:
    print(f"  {time.perf_counter() - _T0:6.1f}s  {text}", file=sys.stderr, flush=True)


def bench(env: Env, plan: Plan, rep: Report) -> None:
    lp = plan.loop
    lite = env.litellm is not None
    seq_clients: list[type[Client]] = [
        RawHttpx,
        RawAiohttp,
        HttpxAiohttp,
        EngineRoute,
        EngineRouteBreaker,
        EngineRouteHttpxAiohttp,
    ]
    seq_clients += [LiteLLMRouter] if lite else []
    main = Group(
        [(c, plan.litellm_n if c is LiteLLMRouter else plan.n) for c in seq_clients],
        plan.levels,
        plan.seconds,
        plan.warmup,
        plan.rounds,
        frozenset() if plan.litellm_rates else frozenset({"litellm"}),
    )
    progress("sequential and throughput")
    seq, thr = run(lp, measure(env, main))

    fo_clients: list[type[Client]] = [RawAiohttpFailover, EngineFailover, EngineFailoverBreaker]
    fo_group = Group(
        [
            (RawAiohttp, plan.n),
            (RawAiohttpFailover, plan.n),
            (EngineRoute, plan.n),
            (EngineFailover, plan.n),
            (EngineFailoverBreaker, plan.n),
        ],
        warmup=plan.warmup,
        rounds=plan.rounds,
    )
    if lite:
        fo_clients.append(LiteLLMFailover)
        fo_group.clients += [
            (LiteLLMRouter, plan.litellm_failover_n),
            (LiteLLMFailover, plan.litellm_failover_n),
        ]
    progress("failover")
    fo, _ = run(lp, measure(env, fo_group))

    st_clients: list[type[Client]] = [StreamHttpx, StreamAiohttp, StreamEngine]
    if lite and plan.litellm_rates:
        st_clients.append(StreamLiteLLM)
    progress("streams")
    st, _ = run(
        lp,
        measure(
            env,
            Group(
                [(c, plan.stream_n // 8 if c is StreamLiteLLM else plan.stream_n) for c in st_clients],
                warmup=plan.warmup // 4,
                rounds=plan.rounds,
            ),
        ),
    )

    other = "uvloop" if lp == "asyncio" else "asyncio"
    uv: dict[tuple[str, str], tuple[float, float]] = {}
    uv_clients: list[type[Client]] = [RawHttpx, RawAiohttp, HttpxAiohttp, EngineRoute]
    if uvloop is not None:
        progress(other)
        useq, uthr = run(
            other,
            measure(
                env,
                Group(
                    [(c, plan.uvloop_n) for c in uv_clients],
                    (50,),
                    plan.uvloop_seconds,
                    plan.warmup,
                    plan.rounds,
                ),
            ),
        )
        for cls in uv_clients:
            uv[cls.key, other] = (useq[cls.key].median, uthr[cls.key, 50][0])
            uv[cls.key, lp] = (seq[cls.key].median, thr[cls.key, 50][0])

    # ---- print ----
    h, a = seq["httpx"].median, seq["aiohttp"].median
    w = 42
    rep.out("")
    rep.out(
        f"Sequential latency, {plan.n} requests after {plan.warmup} warm-up "
        f"(LiteLLM: {plan.litellm_n}), {plan.rounds} interleaved rounds, in microseconds"
    )
    rep.out(
        f"{'client':<{w}} {'median':>8} {'p99':>8} {'vs httpx':>9} {'vs aiohttp':>11} "
        f"{'cpu/req':>8} {'cpu vs aiohttp':>15}"
    )
    ca = seq["aiohttp"].cpu
    for cls in seq_clients:
        s = seq[cls.key]
        rep.out(
            f"{cls.label:<{w}} {_us(s.median):>8} {_us(s.p99):>8} {_x(s.median, h):>9} "
            f"{_x(s.median, a):>11} {_us(s.cpu):>8} {_x(s.cpu, ca):>15}"
        )
    rep.out(
        "  cpu/req: the client thread's CPU time (user + system) per request, a mean; less "
        "sensitive than wall time to other load on the machine"
    )

    rep.out("")
    rep.out(
        f"Throughput, requests/s: best of {plan.rounds} rounds of {plan.seconds:g} s; "
        "% of raw httpx / raw aiohttp"
    )
    head = "".join(f" {'c=' + str(c):>8} {'%httpx':>7} {'%aiohttp':>9}" for c in plan.levels)
    rep.out(f"{'client':<{w}}{head} {'errors':>7}")
    for cls in seq_clients:
        cells = ""
        errs = 0
        for c in plan.levels:
            if (cls.key, c) not in thr:
                cells += f" {'-':>8} {'-':>7} {'-':>9}"
                continue
            r, e = thr[cls.key, c]
            errs += e
            cells += f" {r:>8,.0f} {_pct(r, thr['httpx', c][0]):>7} {_pct(r, thr['aiohttp', c][0]):>9}"
        rep.out(f"{cls.label:<{w}}{cells} {errs:>7}")
    if not plan.litellm_rates and lite:
        rep.out("  LiteLLM's throughput and stream rows are skipped in --quick")

    plain = fo["engine"].median
    rep.out("")
    rep.out(
        "Failover: a priority group whose first target refuses connections (no retries on "
        "it), in microseconds"
    )
    rep.out(f"{'client':<{w}} {'median':>8} {'p99':>8} {'added':>8} {'vs httpx':>9} {'vs aiohttp':>11}")
    refs = {"aiohttp_failover": "aiohttp", "litellm_failover": "litellm"}
    for key, label in (
        ("aiohttp", "raw aiohttp, plain"),
        ("engine", "engine.route(), plain"),
        ("litellm", "LiteLLM Router, plain"),
    ):
        if key in fo:
            s = fo[key]
            rep.out(
                f"{label:<{w}} {_us(s.median):>8} {_us(s.p99):>8} {'':>8} "
                f"{_x(s.median, h):>9} {_x(s.median, a):>11}"
            )
    for cls in fo_clients:
        s = fo[cls.key]
        base = fo[refs.get(cls.key, "engine")].median
        rep.out(
            f"{cls.label:<{w}} {_us(s.median):>8} {_us(s.p99):>8} "
            f"{'+' + _us(s.median - base):>8} {_x(s.median, h):>9} {_x(s.median, a):>11}"
        )
    rep.out(
        "  added = median minus the same client's plain median, measured interleaved with "
        "it; vs httpx / vs aiohttp: against the main table's raw medians"
    )

    rep.out("")
    rep.out(
        f"Streaming, one {STREAM_CHUNKS}-chunk SSE stream per call, {plan.stream_n} streams "
        f"(LiteLLM: {plan.stream_n // 8}), in microseconds"
    )
    rep.out(
        f"{'client':<{w}} {'median':>8} {'p99':>8} {'/chunk':>7} {'+/chunk httpx':>14} "
        f"{'+/chunk aiohttp':>16}"
    )
    sh, sa = st["httpx"].median, st["aiohttp"].median
    for cls in st_clients:
        s = st[cls.key]
        rep.out(
            f"{cls.label:<{w}} {_us(s.median):>8} {_us(s.p99):>8} "
            f"{s.median / STREAM_CHUNKS:>7.1f} {(s.median - sh) / STREAM_CHUNKS:>+14.1f} "
            f"{(s.median - sa) / STREAM_CHUNKS:>+16.1f}"
        )

    if uv:
        rep.out("")
        rep.out(
            f"Event loop: sequential median (us) and throughput at c=50 (req/s); uvloop {uvloop.__version__}"
        )  # type: ignore[union-attr]
        rep.out(
            f"{'client':<{w}} {'asyncio':>8} {'uvloop':>8} {'gain':>6} {'asyncio':>8} "
            f"{'uvloop':>8} {'gain':>6}"
        )
        for cls in uv_clients:
            (sa_, ra_), (su, ru) = uv[cls.key, "asyncio"], uv[cls.key, "uvloop"]
            rep.out(
                f"{cls.label:<{w}} {sa_:>8,.0f} {su:>8,.0f} {_x(sa_, su):>6} {ra_:>8,.0f} "
                f"{ru:>8,.0f} {_x(ru, ra_):>6}"
            )
        eu = uv["engine", "uvloop"]
        rep.out(
            f"  under uvloop: engine.route() sequential {_x(eu[0], uv['httpx', 'uvloop'][0])} "
            f"raw httpx, {_x(eu[0], uv['aiohttp', 'uvloop'][0])} raw aiohttp; c=50 "
            f"{_pct(eu[1], uv['aiohttp', 'uvloop'][1])} of raw aiohttp"
        )
    else:
        rep.out("")
        rep.out("Event loop: uvloop is not installed; asyncio only")

    # ---- targets ----
    c50 = thr["engine", 50][0] / thr["aiohttp", 50][0]
    fo_none = fo["engine_failover"].median - plain
    fo_brk = fo["engine_failover_breaker"].median - plain
    per_chunk = (st["engine"].median - sh) / STREAM_CHUNKS
    e = seq["engine"].median
    targets = [
        ("engine.route() sequential median < 0.75x raw httpx", e / h < 0.75, f"{e / h:.2f}x"),
        ("engine.route() sequential median <= 2x raw aiohttp", e / a <= 2.0, f"{e / a:.2f}x"),
        ("throughput at c=50 >= 40% of raw aiohttp", c50 >= 0.40, f"{100 * c50:.0f}%"),
        ("failover adds < 300 us (breaker: none)", fo_none < 300, f"+{fo_none:.0f} us"),
        ("failover adds < 300 us (breaker on)", fo_brk < 300, f"+{fo_brk:.0f} us"),
        ("streaming adds < 20 us per chunk (vs raw httpx)", per_chunk < 20, f"{per_chunk:+.1f} us"),
    ]
    rep.out("")
    rep.out(f"Targets (issue 3, item 11), loop: {lp}")
    for name, ok, value in targets:
        rep.out(f"  {'PASS' if ok else 'FAIL'}  {name:<52} {value}")
    telemetry_rows(env, plan, rep)


def telemetry_rows(env: Env, plan: Plan, rep: Report) -> None:
    """Sequential medians with telemetry off, metrics on and traces on (an SDK with a no-op
    exporter), interleaved; the engine-overhead histogram against the bench's own difference
    to raw aiohttp."""
    w = 42
    clients: list[type[Client]] = [RawAiohttp, EngineRoute, EngineRouteMetrics]
    traced = _has_otel_sdk()
    clients += [EngineRouteTraces] if traced else []
    progress("telemetry")
    seq, _ = run(
        plan.loop, measure(env, Group([(c, plan.n) for c in clients], warmup=plan.warmup, rounds=plan.rounds))
    )
    a, off = seq["aiohttp"].median, seq["engine"].median
    rep.out("")
    rep.out(
        f"Telemetry: sequential latency, {plan.n} requests, {plan.rounds} interleaved rounds, in microseconds"
    )
    rep.out(
        f"{'client':<{w}} {'median':>8} {'p99':>8} {'vs off':>8} {'vs aiohttp':>11} "
        f"{'- aiohttp':>10} {'histogram':>10} {'cpu/req':>8} {'cpu vs off':>11}"
    )
    cpu_off = seq["engine"].cpu
    for cls in clients:
        s = seq[cls.key]
        hist = OVERHEAD.get(cls.key, (0.0, 0))
        rep.out(
            f"{cls.label:<{w}} {_us(s.median):>8} {_us(s.p99):>8} {_pct(s.median - off, off):>8} "
            f"{_x(s.median, a):>11} {_us(s.median - a):>10} {_us(hist[0]) if hist[1] else '-':>10} "
            f"{_us(s.cpu):>8} {_pct(s.cpu - cpu_off, cpu_off):>11}"
        )
    rep.out(
        "  vs off: the added share over telemetry off; - aiohttp: the bench's own overhead; "
        "histogram: mean engine_overhead_seconds (route) the engine recorded over the same run; "
        "cpu/req: the client thread's CPU per request (steadier than wall time on a loaded machine)"
    )
    m = seq["engine_metrics"].median
    hist_us = OVERHEAD["engine_metrics"][0]
    diff = m - a
    ratio = hist_us / diff if diff > 0 else 0.0
    targets = [
        ("metrics on: sequential median <= +5% over off", m <= off * 1.05, f"{100 * (m / off - 1):+.1f}%")
    ]
    if traced:
        t = seq["engine_traces"].median
        targets.append(
            ("traces on: sequential median <= +15% over off", t <= off * 1.15, f"{100 * (t / off - 1):+.1f}%")
        )
    targets.append(
        ("overhead histogram within 2x of median - raw aiohttp", 0.5 <= ratio <= 2.0, f"{ratio:.2f}x")
    )
    rep.out("")
    rep.out("Targets (issue 10)")
    for name, ok, value in targets:
        rep.out(f"  {'PASS' if ok else 'FAIL'}  {name:<52} {value}")
    recorder_rows(rep, traced, off)


def recorder_rows(rep: Report, traced: bool, off: float) -> None:
    """The recorder's CPU per request in-process (bench/recorder.py) beside its floors, and what
    the targets allow over the telemetry-off median of the run above."""
    from recorder import costs

    progress("recorder, in-process")
    rep.out("")
    rep.out("Telemetry recorder alone, in-process (bench/recorder.py), us per request, median of 9 rounds")
    for name, us in costs(traced).items():
        rep.out(f"  {name:<44} {us:8.1f}")
    rep.out(
        f"  budget over off ({off:,.0f} us): metrics +5% = {off * 0.05:.0f} us, "
        f"traces +15% = {off * 0.15:.0f} us"
    )


PROFILED: dict[str, type[Client]] = {
    "off": EngineRoute,
    "metrics": EngineRouteMetrics,
    "traces": EngineRouteTraces,
}


def _has_otel_sdk() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


# -- profile ------------------------------------------------------------------------------------


def _bucket(path: str) -> str:
    p = path.replace("\\", "/")
    for name in (
        "httpx_aiohttp",
        "httpx",
        "httpcore",
        "aiohttp",
        "yarl",
        "multidict",
        "jinja2",
        "purgatory",
        "pydantic",
        "h11",
        "uvloop",
    ):
        if f"/{name}/" in p:
            return name
    if "/engine/" in p:
        return "engine/" + p.rsplit("/engine/", 1)[1]
    if "/asyncio/" in p:
        return "asyncio"
    if p.startswith("<template>") or p == "<template>":
        return "jinja2 (template code)"
    if "/json/" in p:
        return "json"
    return "other: " + p.rsplit("/", 1)[-1]


def spin(env: Env, plan: Plan, seconds: float, client: type[Client] = EngineRoute) -> None:
    """Sequential ``engine.route()`` for ``seconds`` with no profiler: for py-spy."""

    async def go() -> None:
        async with client(env) as call:
            end = time.perf_counter() + seconds
            n = 0
            while time.perf_counter() < end:
                await call()
                n += 1
        print(f"\n{n} sequential engine.route() calls, {1e6 * seconds / n:.0f} us each")

    run(plan.loop, go())


def profile(env: Env, plan: Plan, seconds: float, top: int, client: type[Client] = EngineRoute) -> None:
    from pyinstrument import Profiler

    async def go() -> None:
        async with client(env) as call:
            for _ in range(plan.warmup):
                await call()
            end = time.perf_counter() + seconds
            n = 0
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            while time.perf_counter() < end:
                await call()
                n += 1
            session = profiler.stop()
        print(
            f"\nprofiled {n} sequential engine.route() calls "
            f"({1e6 * seconds / n:.0f} us each, profiler on), loop: {plan.loop}"
        )
        root = session.root_frame()
        assert root is not None
        total = root.time
        by_fn: dict[tuple[str, str, int], float] = {}
        by_bucket: dict[str, float] = {}
        stack = [root]
        while stack:
            frame = stack.pop()
            stack.extend(frame.children)
            if frame.is_synthetic:
                continue  # "[self]" leaves: counted in their parent's self time below
            t = frame.time - sum(c.time for c in frame.children if not c.is_synthetic)
            if t <= 0:
                continue
            path = frame.file_path or frame.function or "?"
            k = (frame.function or "?", path, frame.line_no or 0)
            by_fn[k] = by_fn.get(k, 0.0) + t
            b = _bucket(path)
            by_bucket[b] = by_bucket.get(b, 0.0) + t
        print("\nSelf time by library / module (share of all samples on the client core)")
        for b, t in sorted(by_bucket.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * t / total:5.1f}%  {b}")
        print("\nSelf time by function")
        for (fn, path, line), t in sorted(by_fn.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * t / total:5.1f}%  {fn:<34} {_bucket(path)}:{line}")
        print("\nCall tree (pyinstrument; frames under 1% hidden)")
        print(session_text(profiler))

    run(plan.loop, go())


def session_text(profiler: Any) -> str:
    from pyinstrument.renderers import ConsoleRenderer

    renderer = ConsoleRenderer(
        unicode=True, color=False, time="percent_of_total", processor_options={"filter_threshold": 0.01}
    )
    return str(profiler.output(renderer))


# -- main ---------------------------------------------------------------------------------------


def import_litellm(notes: list[str]) -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    try:
        import litellm
    except ImportError:
        notes.append(
            "LiteLLM is not installed: its rows are skipped "
            "(pip install 'engine[bench]' or pip install litellm)"
        )
        return None
    # Cancelling LiteLLM calls at the end of a throughput round leaves coroutines unawaited.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~30 s run with fewer samples")
    p.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the main table (the other one is measured too)",
    )
    p.add_argument(
        "--upstream",
        choices=("nginx", "fake"),
        default="nginx",
        help="nginx when installed (default), or the bundled fake provider",
    )
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even when installed")
    p.add_argument(
        "--telemetry",
        action="store_true",
        help="only the telemetry rows (telemetry off, metrics on, traces on) and their targets",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table: profile sequential engine.route() (pyinstrument)",
    )
    p.add_argument(
        "--spin",
        action="store_true",
        help="instead of the table: sequential engine.route() for --profile-seconds "
        "with no profiler (run it under py-spy)",
    )
    p.add_argument("--profile-seconds", type=float, default=5.0)
    p.add_argument(
        "--telemetry-on",
        choices=tuple(PROFILED),
        default="off",
        help="--profile / --spin: the engine with telemetry off, metrics on, or metrics and traces on",
    )
    p.add_argument("--top", type=int, default=25, help="rows per profile listing")
    args = p.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    plan.loop = args.loop
    if plan.loop == "uvloop" and uvloop is None:
        p.error("uvloop is not installed")

    t0 = time.perf_counter()
    notes: list[str] = []
    avail = cores()
    client_core = avail[0]
    upstream_core = avail[1] if len(avail) > 1 else None
    up = start_upstream(upstream_core, prefer=args.upstream)
    if up.kind != "nginx" and args.upstream == "nginx":
        notes.append(
            "nginx is not installed: the upstream is the bundled fake provider in its "
            "own process (slower than nginx: absolute numbers are not comparable)"
        )
    pinned = pin(client_core)
    if upstream_core is None:
        notes.append("one core only: client and upstream share it")
    try:
        refused = refused_port()
        routes = ROUTES.format(
            url=up.url,
            stream_url=up.stream_url,
            model=MODEL,
            refused=refused,
            stream_headers=json.dumps(up.stream_headers),
        )
        skip = args.no_litellm or args.profile or args.spin or args.telemetry
        litellm = None if skip else import_litellm(notes)
        env = Env(up, refused, routes, litellm, notes)
        rep = Report()
        rep.out(
            f"engine overhead: Python {platform.python_version()}, {platform.machine()}, "
            f"{len(avail)} cores, load {os.getloadavg()[0]:.2f}"
        )
        rep.out(f"upstream: {up.describe()}")
        rep.out(
            f"client: {'pinned to core ' + str(client_core) if pinned else 'not pinned'}; "
            f"loop: {plan.loop}; engine transport: the default unless noted"
            + (f"; LiteLLM {_litellm_version()}" if litellm is not None else "")
        )
        for note in notes:
            rep.out(f"note: {note}")
        if args.spin:
            spin(env, plan, args.profile_seconds, PROFILED[args.telemetry_on])
        elif args.profile:
            profile(env, plan, args.profile_seconds, args.top, PROFILED[args.telemetry_on])
        elif args.telemetry:
            telemetry_rows(env, plan, rep)
            rep.out(f"\n(run took {time.perf_counter() - t0:.0f} s)")
        else:
            bench(env, plan, rep)
            rep.out(f"\n(run took {time.perf_counter() - t0:.0f} s)")
    finally:
        up.stop()
    return 0


def _litellm_version() -> str:
    from importlib.metadata import version

    try:
        return version("litellm")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
