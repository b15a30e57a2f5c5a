"""Compile-time speed: the shipped routes.yaml, a generated large config, and build_plan().

Targets (issue 2, on a 2-core machine): shipped config < 50 ms, 1,000 providers / 1,000 groups /
5,000 routes < 2 s, plan() < 200 microseconds. Prints a table with PASS/FAIL and exits 1 when a
target is missed.

    .venv/bin/python bench/compile.py [--runs N] [--large-runs N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.compiler import compile_file, compile_loaded, compile_text
from engine.loader import load
from engine.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "OPENAI_API_KEY": "k",
    "ANTHROPIC_API_KEY": "k",
    "GROQ_API_KEY": "k",
    "TOGETHER_API_KEY": "k",
    "GEMINI_API_KEY": "k",
}
HI = [{"role": "user", "content": "Say hello."}]
PLAN_REQUESTS = {
    "chat (priority group)": {"model": "chat", "messages": HI, "temperature": 0},
    "tier=free (weighted, nested)": {"model": "x", "messages": HI, "metadata": {"tier": "free"}},
    "gpt-4o (glob, provider)": {"model": "gpt-4o", "messages": HI, "max_tokens": 64},
    "catch-all": {"model": "mystery", "messages": HI},
}
KINDS = ("openai", "anthropic", "gemini", "ollama")


def large_config(providers: int = 1000, groups: int = 1000, routes: int = 5000) -> str:
    """A valid config: each provider serves two models; each group mixes provider models and
    (for half of them) an earlier group; routes match models, globs and metadata."""
    out = [
        "version: 1",
        "defaults: {deadline: 30m}",
        "speeds:",
        "  snappy: {connect: 1s, read: 5s, retries: 1, backoff: {base: 100ms}}",
        "retry:",
        "  impatient: {retry_on: {status: [], errors: [reset]}}",
        "breakers:",
        "  tight: {failures: 2, recovery: 5s, scope: model}",
        "cache: {responses: {ttl: 5m, max_temperature: 0.2}}",
        "providers:",
    ]
    for i in range(providers):
        kind = KINDS[i % 4]
        out += [
            f"  p{i}:",
            f"    kind: {kind}",
            f"    base_url: https://p{i}.example.com/v1",
            f"    api_key: ${{P{i}_KEY:-k{i}}}",
            f"    speed: {('fast', 'snappy', 'medium')[i % 3]}",
        ]
        if i % 5 == 0:
            out.append("    retry: impatient")
        if i % 7 == 0:
            out.append("    breaker: tight")
        out += [
            "    models:",
            f"      m{i}-a: {{context: 128000, price: {{input: 0.1, output: 0.4}}}}",
            f"      m{i}-b: {{}}",
        ]
    out.append("groups:")
    strategies = ("priority", "weighted", "round_robin", "least_latency", "hedged")
    for g in range(groups):
        s = strategies[g % 5]
        a, b = (g * 7) % providers, (g * 13 + 1) % providers
        targets = [f"p{a}/m{a}-a", f"{{target: p{b}/m{b}-b, weight: 2}}", f"p{(a + 1) % providers}"]
        if g % 2 and g > 0:
            targets.append(f"g{g - 1}")
        out += [
            f"  g{g}:",
            f"    strategy: {s}",
            f"    targets: [{', '.join(targets)}]",
            "    max_attempts: 2",
        ]
        if s == "hedged":
            out.append("    hedge_after: 300ms")
    out.append("routes:")
    for r in range(routes - 1):
        g = r % groups
        if r % 3 == 0:
            out += [f"  - match: {{model: route-{r}}}", f"    to: g{g}"]
        elif r % 3 == 1:
            out += [f'  - match: {{model: "fam{r}-*"}}', f"    to: p{r % providers}"]
        else:
            out += [
                f"  - match: {{model: m{r}, metadata: {{tier: t{r}}}}}",
                f"    to: p{r % providers}/m{r % providers}-a",
                "    deadline: 10m",
            ]
    out += ["  - match: {}", "    to: g0"]
    return "\n".join(out) + "\n"


def _median(fn: Callable[[], Any], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    gc.collect()
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _per_call(fn: Callable[[], Any], calls: int, repeats: int = 7) -> float:
    for _ in range(calls // 10 + 1):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def _profile(fn: Callable[[], Any], title: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    print(f"\n== profile: {title}\n{buf.getvalue()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="runs for the shipped config")
    ap.add_argument("--large-runs", type=int, default=5, help="runs for the large config")
    ap.add_argument("--plan-calls", type=int, default=2000, help="build_plan() calls per sample")
    ap.add_argument("--profile", action="store_true", help="cProfile each compile once")
    args = ap.parse_args(argv)

    shipped = ROOT / "routes.yaml"
    rows: list[tuple[str, float, float | None, str]] = []  # name, value, target (None: info), unit

    t = _median(lambda: compile_file(shipped, env=ENV), args.runs)
    rows.append(("compile shipped routes.yaml", t * 1e3, 50.0, "ms"))

    text = large_config()
    lines = text.count("\n")
    t = _median(lambda: compile_text(text, base_dir=ROOT, env={}), args.large_runs)
    rows.append((f"compile 1000 providers/1000 groups/5000 routes ({lines} lines)", t * 1e3, 2000.0, "ms"))
    t = _median(lambda: load(text, env={}), args.large_runs)
    rows.append(("  of which: load (ruamel parse, positions, ${ENV})", t * 1e3, None, "ms"))
    loaded = load(text, env={})  # compile_loaded only reads it
    t = _median(lambda: compile_loaded(loaded, base_dir=ROOT), args.large_runs)
    rows.append(("  of which: compile_loaded (schema, resolve, templates)", t * 1e3, None, "ms"))

    graph = compile_file(shipped, env=ENV)
    for name, request in PLAN_REQUESTS.items():
        t = _per_call(lambda r=request: build_plan(graph, r), args.plan_calls)  # type: ignore[misc]
        rows.append((f"build_plan: {name}", t * 1e6, 200.0, "us"))
    big = compile_text(text, base_dir=ROOT, env={})
    last = {"model": "mystery", "messages": HI}  # matches only the final catch-all of 5,000
    t = _per_call(lambda: build_plan(big, last), max(args.plan_calls // 10, 50))
    rows.append(("build_plan: large config, last of 5000 routes (info)", t * 1e6, None, "us"))

    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  {'target':>10}  result")
    failed = 0
    targets = [r for r in rows if r[2] is not None]
    for name, value, target, unit in rows:
        if target is None:
            print(f"{name:<{width}}  {value:>8.1f}{unit:>2}  {'-':>10}  info")
            continue
        ok = value < target
        failed += not ok
        print(
            f"{name:<{width}}  {value:>8.1f}{unit:>2}  {'< ' + f'{target:g}' + unit:>10}  "
            f"{'PASS' if ok else 'FAIL'}"
        )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {len(targets) - failed}/{len(targets)} targets met"
    )

    if args.profile:
        _profile(lambda: compile_file(shipped, env=ENV), "shipped routes.yaml")
        _profile(lambda: compile_text(text, base_dir=ROOT, env={}), "large config")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
