"""``engine serve`` measured: the gateway on one core in front of the loopback nginx upstream of
``bench/overhead.py``, against calling the upstream directly.

Rows: sequential added latency (p50/p99), throughput at c=1 and c=50 (wrk when installed, and a
Python aiohttp client), a 50-chunk stream's time to first chunk and total, the gateway's CPU per
request and its RSS after 1,000 and after 100,000 requests. The route is full routing: a
priority group with a breaker, the template render, the parse and the re-encode, telemetry
metrics on, a client key checked, one access-log line per request (to /dev/null). Targets
(issue 11) are marked PASS/FAIL, with each row's ratio to the pass-through floor.

Columns: direct, ``bench/passthrough.py`` (the floor), ``engine serve`` and, with ``--against
CHECKOUT``, another checkout's ``engine serve`` (an A/B in one run). All servers run at once on
the same core, each idle while another is measured; every figure is the median of ``--rounds``
rounds (default 3), each round measuring every column back to back, so a noisy machine shifts
the columns alike.

Run: ``.venv/bin/python bench/gateway.py`` (about 3 minutes), ``--quick`` (about 1 minute),
``--spin SECONDS`` (only load the gateway at c=50: run py-spy against the printed pid).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from common import (
    BODY,
    MODEL,
    STREAM_BODY,
    STREAM_CHUNKS,
    Process,
    Stats,
    Upstream,
    cores,
    free_port,
    pin,
    start_upstream,
)
from peers import LiteLLMProxy, Peer, PortkeyGateway, litellm_binary, portkey_script

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-gateway-bench-0123456789"
ROUTES = """\
version: 1
defaults: {{speed: bench, retry: transient, breaker: standard, deadline: 30s}}
speeds:
  bench: {{connect: 5s, read: 30s, pool: 30s, retries: 0, backoff: {{base: 10ms}}}}
telemetry: {{metrics: true, logs: {{level: {log_level}}}}}
providers:
  up: {{kind: openai, base_url: "{url}/v1", api_key: sk-bench,
       pool: {{max_connections: 200, max_keepalive: 100}},
       models: {{{model}: {{price: {{input: 0.15, output: 0.6}}}}}}}}
  sse: {{kind: openai, base_url: "{stream_url}/v1", api_key: sk-bench, models: {{{model}: {{}}}}}}
groups:
  chat: {{strategy: priority, targets: [up/{model}]}}
routes:
  - match: {{model: {model}}}
    to: chat
  - match: {{model: stream}}
    to: sse/{model}
server:
  keys:
    bench: {{key: "${{BENCH_KEY}}"}}
"""
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}


@dataclass
class Plan:
    sequential: int = 2000
    streams: int = 300
    seconds: float = 5.0
    rss_requests: int = 100_000

    @classmethod
    def quick(cls) -> Plan:
        return cls(sequential=500, streams=100, seconds=2.0, rss_requests=20_000)


# -- the gateway process ----------------------------------------------------------------------


class Gateway(Process):
    """``engine serve`` pinned to ``core``."""

    def __init__(self, up: Upstream, core: int | None, log_level: str, root: Path = ROOT) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        (self.dir / "routes.yaml").write_text(
            ROUTES.format(url=up.url, stream_url=up.stream_url, model=MODEL, log_level=log_level)
        )
        self.port = free_port()
        env = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--listen", f"127.0.0.1:{self.port}"],
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "serving" not in line:
            raise RuntimeError(f"engine serve did not start: {line!r}")
        self.url = f"http://127.0.0.1:{self.port}"


class Passthrough(Gateway):
    """bench/passthrough.py (the floor of a Python gateway) pinned to ``core``, forwarding to ``url``."""

    def __init__(self, url: str, core: int | None) -> None:  # (no routes.yaml: nothing to route)
        self.dir = Path(tempfile.mkdtemp(prefix="bench-passthrough-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "passthrough.py"), url, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        assert self.proc.stdout is not None
        if "serving" not in self.proc.stdout.readline().decode():
            raise RuntimeError("bench/passthrough.py did not start")
        time.sleep(0.3)  # (it prints before uvicorn binds)
        self.url = f"http://127.0.0.1:{self.port}"


# -- Python clients -----------------------------------------------------------------------------


async def sequential(url: str, n: int, headers: dict[str, str] = HEADERS) -> Stats:
    async with aiohttp.ClientSession() as s:
        samples = []
        for i in range(n + 50):
            t = time.perf_counter_ns()
            async with s.post(url, data=BODY, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            if i >= 50:
                samples.append(time.perf_counter_ns() - t)
    return Stats.of(samples)


async def throughput(url: str, concurrency: int, seconds: float, headers: dict[str, str] = HEADERS) -> float:
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        done = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with s.post(url, data=BODY, headers=headers) as r:
                    await r.read()
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t)


async def streams(url: str, n: int, body: bytes, headers: dict[str, str] = HEADERS) -> tuple[Stats, Stats]:
    """Time to first chunk and total of ``n`` sequential streams."""
    first, total = [], []
    async with aiohttp.ClientSession() as s:
        for i in range(n + 10):
            t = time.perf_counter_ns()
            ttfc = 0
            async with s.post(url, data=body, headers=headers) as r:
                assert r.status == 200, r.status
                async for chunk in r.content.iter_any():
                    if not ttfc and b"data: {" in chunk:
                        ttfc = time.perf_counter_ns() - t
                end = time.perf_counter_ns() - t
            if i >= 10:
                first.append(ttfc)
                total.append(end)
    return Stats.of(first), Stats.of(total)


# -- wrk ----------------------------------------------------------------------------------------


def lua(headers: dict[str, str]) -> str:
    """wrk's script: POST the bench's body with ``headers``."""
    lines = ['wrk.method = "POST"', f"wrk.body = [[{BODY.decode()}]]"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def wrk(
    url: str, concurrency: int, seconds: float, headers: dict[str, str] = HEADERS
) -> tuple[float, int] | None:
    """(requests/s, requests) by wrk, one thread; None when wrk is not installed."""
    binary = shutil.which("wrk")
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua(headers))
    try:
        out = subprocess.run(
            [binary, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", f.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(f.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None or count is None:
        raise RuntimeError(f"wrk said: {out}")
    if bad:
        raise RuntimeError(f"wrk got {bad.group(1)} error answers:\n{out}")
    return float(rate.group(1)), int(count.group(1))


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Column:
    """One server measured: its JSON and stream URLs, and the process to read CPU and RSS of."""

    name: str
    url: str
    stream_url: str | None  # None: no stream row (a peer that cannot relay the bench's stream)
    stream_body: bytes
    proc: Gateway | Peer | None = None
    headers: dict[str, str] = field(default_factory=lambda: HEADERS)
    stream_headers: dict[str, str] = field(default_factory=lambda: HEADERS)
    cpu: float = 0.0  # seconds spent in the wrk runs
    wrk_served: int = 0  # requests answered in the wrk runs
    served: int = 0  # requests answered in every run


def run(
    plan: Plan, log_level: str, rounds: int, against: Path | None, peers: bool = True
) -> tuple[list[str], list[list[str]]]:
    """The table (head, rows): every figure the median of ``rounds`` rounds, each round
    measuring every column back to back (a noisy machine shifts them all alike)."""
    avail = cores()
    gw_core, other = (avail[-1], avail[0]) if len(avail) > 1 else (None, None)
    up = start_upstream(other)
    pin(other)  # the clients share the upstream's core: the servers have their own (one at a time)
    procs: list[Gateway | Peer] = []
    try:
        gw = Gateway(up, gw_core, log_level)
        procs.append(gw)
        floor_json, floor_sse = Passthrough(up.url, gw_core), Passthrough(up.stream_url, gw_core)
        procs += [floor_json, floor_sse]
        routed = STREAM_BODY.replace(MODEL.encode(), b"stream", 1)
        path = "/v1/chat/completions"
        cols = [
            Column("direct", up.url + path, up.stream_url + path, STREAM_BODY),
            Column("pass-through", floor_json.url + path, floor_sse.url + path, STREAM_BODY, floor_json),
            Column("engine serve", gw.url + path, gw.url + path, routed, gw),
        ]
        if against is not None:
            other_gw = Gateway(up, gw_core, log_level, root=against)
            procs.append(other_gw)
            cols.append(
                Column(
                    f"engine serve ({against.name})",
                    other_gw.url + path,
                    other_gw.url + path,
                    routed,
                    other_gw,
                )
            )
        if peers:
            for peer in _peers(up, gw_core):
                procs.append(peer)
                col = Column(peer.name, peer.url, peer.stream_url, routed, peer, peer.headers)
                col.stream_headers = peer.stream_headers
                cols.append(col)
        for c in cols[1:]:
            # warm up: connections, caches, the first 1,000 requests
            asyncio.run(sequential(c.url, 1000, c.headers))
        rss_1k = gw.rss()
        figures: dict[str, dict[str, list[float]]] = {c.name: {} for c in cols}
        for _ in range(rounds):
            _round(plan, cols, figures)
        served = 1000 + cols[2].served
        while served < plan.rss_requests:
            got = wrk(gw.url + path, 50, 5)
            if got is None:
                asyncio.run(throughput(gw.url + path, 50, 5))
                served += 5000
            else:
                served += got[1]
        rss_n = gw.rss()
    finally:
        for proc in procs:
            proc.stop()
        up.stop()
    return _table(cols, figures, rss_1k, rss_n, served)


def _each(cols: list[Column]) -> Iterator[Column]:
    """The columns one by one, every peer paused but the one measured (SIGSTOP: a peer's
    background work would land on the core the measured server has to itself)."""
    peers = [c.proc for c in cols if isinstance(c.proc, Peer)]
    for peer in peers:
        peer.pause()
    try:
        for col in cols:
            if isinstance(col.proc, Peer):
                col.proc.resume()
            try:
                yield col
            finally:
                if isinstance(col.proc, Peer):
                    col.proc.pause()
    finally:
        for peer in peers:
            peer.resume()


def _round(plan: Plan, cols: list[Column], figures: dict[str, dict[str, list[float]]]) -> None:
    """One measurement of every row for every column, column after column per row."""

    def put(col: Column, row: str, value: float) -> None:
        figures[col.name].setdefault(row, []).append(value)

    for col in _each(cols):
        got = asyncio.run(sequential(col.url, plan.sequential, col.headers))
        col.served += plan.sequential + 50
        put(col, "sequential p50 (µs)", got.median)
        put(col, "sequential p99 (µs)", got.p99)
    for n in (1, 50):
        for col in _each(cols):
            rate = asyncio.run(throughput(col.url, n, plan.seconds / 2, col.headers))
            col.served += int(rate * plan.seconds / 2)
            put(col, f"aiohttp client c={n} (req/s)", rate)
    for n in (1, 50):
        for col in _each(cols):
            cpu0 = col.proc.cpu() if col.proc is not None else 0.0
            result = wrk(col.url, n, plan.seconds, col.headers)
            if result is None:
                continue
            put(col, f"wrk c={n} (req/s)", result[0])
            col.served += result[1]
            if col.proc is not None:
                col.cpu += col.proc.cpu() - cpu0
                col.wrk_served += result[1]
                put(col, "CPU per request (µs)", col.cpu / max(1, col.wrk_served) * 1e6)
    for col in _each(cols):
        if col.stream_url is None:
            continue
        first, total = asyncio.run(streams(col.stream_url, plan.streams, col.stream_body, col.stream_headers))
        col.served += plan.streams + 10
        put(col, f"{STREAM_CHUNKS}-chunk stream TTFC p50 (µs)", first.median)
        put(col, f"{STREAM_CHUNKS}-chunk stream total p50 (µs)", total.median)


def _table(
    cols: list[Column], figures: dict[str, dict[str, list[float]]], rss_1k: int, rss_n: int, served: int
) -> tuple[list[str], list[list[str]]]:
    def med(col: str, row: str) -> float | None:
        values = figures[col].get(row)
        return statistics.median(values) if values else None

    def cell(col: str, row: str) -> str:
        v = med(col, row)
        return "" if v is None else (f"{v:,.0f}" if "req/s" in row else f"{v:.0f}")

    names = [c.name for c in cols]
    rows: list[list[str]] = []
    order = [r for r in figures["engine serve"] if r != "CPU per request (µs)"]
    order.insert(
        order.index("wrk c=50 (req/s)") + 1 if "wrk c=50 (req/s)" in order else 0, "CPU per request (µs)"
    )
    for row in order:
        target = ""
        d, g = med("direct", row), med("engine serve", row)
        floor = med("pass-through", row)
        if row == "sequential p50 (µs)" and d is not None and g is not None:
            target = _target(g - d <= 500, f"+{g - d:.0f} (≤ +500)")
        elif row == "wrk c=50 (req/s)" and g is not None:
            target = _target(g >= 5000, "≥ 5,000")
            for peer, want in (("Portkey gateway", 5), ("LiteLLM proxy", 30)):
                theirs = med(peer, row) if peer in figures else None
                if theirs:
                    target += f"; {_target(g / theirs >= want, f'{g / theirs:.1f}x {peer} (≥ {want}x)')}"
        elif row.endswith("total p50 (µs)") and d is not None and g is not None:
            target = _target(g / d <= 4, f"{g / d:.1f}x (≤ 4x)")
        if floor and g and row != "CPU per request (µs)":
            target += f"{'; ' if target else ''}{g / floor:.2f}x the floor"
        rows.append([row, *(cell(n, row) for n in names), target])
    growth = (rss_n - rss_1k) / rss_1k * 100
    rss = ["" for _ in names]
    rss[2] = f"{rss_1k / 1024:.1f} / {rss_n / 1024:.1f}"
    rows.append(
        [
            f"RSS after 1,000 / {served:,} requests (MiB)",
            *rss,
            _target(growth <= 10, f"{growth:+.1f} % (≤ 10 %)"),
        ]
    )
    return ["row", *names, "target"], rows


def _peers(up: Upstream, core: int | None) -> list[Peer]:
    """The peers installed here, started (one that fails to start is left out, and said so)."""
    out: list[Peer] = []
    binary = litellm_binary()
    starts: list[tuple[str, Callable[[], Peer] | None]] = [
        ("LiteLLM proxy", (lambda: LiteLLMProxy(binary, up, core, KEY)) if binary else None)
    ]
    script = portkey_script()
    starts.append(("Portkey gateway", (lambda: PortkeyGateway(script, up, core)) if script else None))
    for name, start in starts:
        if start is None:
            print(f"{name}: not installed, no column", file=sys.stderr)
            continue
        try:
            out.append(start())
        except Exception as exc:  # (a peer's failure to start is not the bench's)
            print(f"{name}: did not start ({exc}), no column", file=sys.stderr)
    return out


def _target(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'} {text}"


def spin(seconds: float, log_level: str) -> None:
    avail = cores()
    gw_core, other = (avail[-1], avail[0]) if len(avail) > 1 else (None, None)
    up = start_upstream(other)
    pin(other)
    gw = Gateway(up, gw_core, log_level)
    print(f"gateway pid {gw.proc.pid}: py-spy record -p {gw.proc.pid} -d {seconds:.0f}", flush=True)
    try:
        asyncio.run(sequential(gw.url + "/v1/chat/completions", 200))
        if wrk(gw.url + "/v1/chat/completions", 50, seconds) is None:
            asyncio.run(throughput(gw.url + "/v1/chat/completions", 50, seconds))
    finally:
        gw.stop()
        up.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples, 20,000 requests for the RSS row")
    p.add_argument("--spin", type=float, metavar="SECONDS", help="only load the gateway (for py-spy)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each figure their median (default 3)")
    p.add_argument(
        "--against", type=Path, metavar="CHECKOUT", help="also measure another checkout's engine serve (A/B)"
    )
    p.add_argument("--no-peers", action="store_true", help="no LiteLLM proxy / Portkey columns")
    args = p.parse_args(argv)
    level = "info"  # engine serve writes one access-log line per request (to /dev/null here)
    if args.spin:
        spin(args.spin, level)
        return 0
    t0 = time.perf_counter()
    against = args.against.resolve() if args.against is not None else None
    plan = Plan.quick() if args.quick else Plan()
    head, rows = run(plan, level, max(1, args.rounds), against, not args.no_peers)
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(len(head))]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(f"| {line} |\n|{'|'.join('-' * (w + 2) for w in widths)}|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    print(
        f"\n{time.perf_counter() - t0:.0f} s, medians of {args.rounds} rounds; "
        "access log on (one line per request, to /dev/null)"
    )
    print("pass-through: bench/passthrough.py, the floor of a Python gateway (one shared aiohttp session,")
    print("no routing) on the same core in the same run: the calibration point of issue 11's figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
