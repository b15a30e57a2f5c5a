"""``engine serve`` measured: the gateway on one core in front of the loopback nginx upstream of
``bench/overhead.py``, against calling the upstream directly.

Rows: sequential added latency (p50/p99), throughput at c=1 and c=50 (wrk when installed, and a
Python aiohttp client), a 50-chunk stream's time to first chunk and total, the gateway's CPU per
request and its RSS after 1,000 and after 100,000 requests. The route is full routing: a
priority group with a breaker, the template render, the parse and the re-encode, telemetry
metrics on, a client key checked, one access-log line per request (to /dev/null). Targets
(issue 11) are marked PASS/FAIL.

Run: ``.venv/bin/python bench/gateway.py`` (about 1.5 minutes), ``--quick`` (about 30 s),
``--spin SECONDS`` (only load the gateway at c=50: run py-spy against the printed pid).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from common import (
    BODY,
    MODEL,
    STREAM_BODY,
    STREAM_CHUNKS,
    Stats,
    Upstream,
    cores,
    free_port,
    pin,
    start_upstream,
)

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


class Gateway:
    """``engine serve`` pinned to ``core``."""

    def __init__(self, up: Upstream, core: int | None, log_level: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        (self.dir / "routes.yaml").write_text(
            ROUTES.format(url=up.url, stream_url=up.stream_url, model=MODEL, log_level=log_level)
        )
        self.port = free_port()
        env = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(ROOT)}
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

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """Resident set size, KiB."""
        match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(match.group(1)) if match else 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


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


def floor(up: Upstream, core: int | None, plan: Plan) -> dict[str, str]:
    """The minimal pass-through's figures for the rows it can share with ``engine serve``."""
    out: dict[str, str] = {}
    p = Passthrough(up.url, core)
    try:
        url = p.url + "/v1/chat/completions"
        asyncio.run(sequential(url, 500))
        out["sequential p50 (µs)"] = f"{asyncio.run(sequential(url, plan.sequential)).median:.0f}"
        for c in (1, 50):
            got = wrk(url, c, plan.seconds)
            if got is not None:
                out[f"wrk c={c} (req/s)"] = f"{got[0]:,.0f}"
    finally:
        p.stop()
    s = Passthrough(up.stream_url, core)
    try:
        first, total = asyncio.run(streams(s.url + "/v1/chat/completions", plan.streams, STREAM_BODY))
        out[f"{STREAM_CHUNKS}-chunk stream TTFC p50 (µs)"] = f"{first.median:.0f}"
        out[f"{STREAM_CHUNKS}-chunk stream total p50 (µs)"] = f"{total.median:.0f}"
    finally:
        s.stop()
    return out


# -- Python clients -----------------------------------------------------------------------------


async def sequential(url: str, n: int) -> Stats:
    async with aiohttp.ClientSession() as s:
        samples = []
        for i in range(n + 50):
            t = time.perf_counter_ns()
            async with s.post(url, data=BODY, headers=HEADERS) as r:
                await r.read()
                assert r.status == 200, r.status
            if i >= 50:
                samples.append(time.perf_counter_ns() - t)
    return Stats.of(samples)


async def throughput(url: str, concurrency: int, seconds: float) -> float:
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        done = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with s.post(url, data=BODY, headers=HEADERS) as r:
                    await r.read()
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t)


async def streams(url: str, n: int, body: bytes) -> tuple[Stats, Stats]:
    """Time to first chunk and total of ``n`` sequential streams."""
    first, total = [], []
    async with aiohttp.ClientSession() as s:
        for i in range(n + 10):
            t = time.perf_counter_ns()
            ttfc = 0
            async with s.post(url, data=body, headers=HEADERS) as r:
                async for chunk in r.content.iter_any():
                    if not ttfc and b"data: {" in chunk:
                        ttfc = time.perf_counter_ns() - t
                end = time.perf_counter_ns() - t
            if i >= 10:
                first.append(ttfc)
                total.append(end)
    return Stats.of(first), Stats.of(total)


# -- wrk ----------------------------------------------------------------------------------------

LUA = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def wrk(url: str, concurrency: int, seconds: float) -> tuple[float, int] | None:
    """(requests/s, requests) by wrk, one thread; None when wrk is not installed."""
    binary = shutil.which("wrk")
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=BODY.decode(), key=KEY))
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


def run(plan: Plan, log_level: str) -> list[tuple[str, str, str, str, str]]:
    avail = cores()
    gw_core, other = (avail[-1], avail[0]) if len(avail) > 1 else (None, None)
    up = start_upstream(other)
    pin(other)  # the clients share the upstream's core: the gateway has its own
    gw = Gateway(up, gw_core, log_level)
    rows: list[tuple[str, str, str, str]] = []
    try:
        direct, through = up.url + "/v1/chat/completions", gw.url + "/v1/chat/completions"
        asyncio.run(sequential(through, 1000))  # warm up: connections, caches, first 1,000 requests
        rss_1k = gw.rss()
        d = asyncio.run(sequential(direct, plan.sequential))
        g = asyncio.run(sequential(through, plan.sequential))
        added50, added99 = g.median - d.median, g.p99 - d.p99
        rows.append(
            (
                "sequential p50 (µs)",
                f"{d.median:.0f}",
                f"{g.median:.0f}",
                _target(added50 <= 500, f"+{added50:.0f} (≤ +500)"),
            )
        )
        rows.append(("sequential p99 (µs)", f"{d.p99:.0f}", f"{g.p99:.0f}", f"+{added99:.0f}"))
        for c in (1, 50):
            pd, pg = (asyncio.run(throughput(u, c, plan.seconds)) for u in (direct, through))
            rows.append((f"aiohttp client c={c} (req/s)", f"{pd:,.0f}", f"{pg:,.0f}", ""))
        served = plan.sequential * 2 + 1000
        cpu0 = gw.cpu()
        wrk_c1 = 0
        for c in (1, 50):
            wd, wg = wrk(direct, c, plan.seconds), wrk(through, c, plan.seconds)
            if wd is None or wg is None:
                rows.append((f"wrk c={c}", "not installed", "", ""))
                continue
            served += wg[1]
            if c == 1:
                wrk_c1 = wg[1]
            mark = _target(wg[0] >= 5000, "≥ 5,000") if c == 50 else ""
            rows.append((f"wrk c={c} (req/s)", f"{wd[0]:,.0f}", f"{wg[0]:,.0f}", mark))
            if c == 50:
                cpu_per = (gw.cpu() - cpu0) / max(1, wg[1] + wrk_c1) * 1e6
                rows.append(("gateway CPU per request (µs)", "", f"{cpu_per:.0f}", "wrk c=1 + c=50 runs"))
        sd = asyncio.run(streams(up.stream_url + "/v1/chat/completions", plan.streams, STREAM_BODY))
        sg = asyncio.run(streams(through, plan.streams, STREAM_BODY.replace(MODEL.encode(), b"stream", 1)))
        rows.append(
            (f"{STREAM_CHUNKS}-chunk stream TTFC p50 (µs)", f"{sd[0].median:.0f}", f"{sg[0].median:.0f}", "")
        )
        ratio = sg[1].median / sd[1].median
        rows.append(
            (
                f"{STREAM_CHUNKS}-chunk stream total p50 (µs)",
                f"{sd[1].median:.0f}",
                f"{sg[1].median:.0f}",
                _target(ratio <= 4, f"{ratio:.1f}x (≤ 4x)"),
            )
        )
        while served < plan.rss_requests:
            got = wrk(through, 50, 5)
            if got is None:
                asyncio.run(throughput(through, 50, 5))
                served += 5000
            else:
                served += got[1]
        rss_n = gw.rss()
        gw.stop()
        base = floor(up, gw_core, plan)
        growth = (rss_n - rss_1k) / rss_1k * 100
        rows.append(
            (
                f"RSS after 1,000 / {served:,} requests (MiB)",
                f"{rss_1k / 1024:.1f}",
                f"{rss_n / 1024:.1f}",
                _target(growth <= 10, f"{growth:+.1f} % (≤ 10 %)"),
            )
        )
    finally:
        gw.stop()
        up.stop()
    return [(r[0], r[1], base.get(r[0], ""), r[2], r[3]) for r in rows]


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
    args = p.parse_args(argv)
    level = "info"  # engine serve writes one access-log line per request (to /dev/null here)
    if args.spin:
        spin(args.spin, level)
        return 0
    t0 = time.perf_counter()
    rows = run(Plan.quick() if args.quick else Plan(), level)
    head = ("row", "direct", "pass-through", "engine serve", "target")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(5)]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(f"| {line} |\n|{'|'.join('-' * (w + 2) for w in widths)}|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s; access log on (one line per request, to /dev/null)")
    print("pass-through: bench/passthrough.py, the floor of a Python gateway (one shared aiohttp session,")
    print("no routing) on the same core in the same run: the calibration point of issue 11's figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
