"""``engine bench [FILE] --model M [-n N] [-c C] [--stream] [--json] [--plot FILE] [--fake]``: the
command's arguments in, each target's figures on stdout (a table, or JSON), a progress bar on
stderr, and the exit code out: 0 once measured (errors are figures, not failures), 1 for a
config error or a model no route takes, 2 for usage."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="measure each target a route can reach: latency p50/p95/p99, TTFT, tokens/s, errors, cost",
        description="Sends N requests (C at a time) to each target the model's route can reach, "
        "each target alone: no failover, no retries, no breaker, no response cache.",
    )
    b.add_argument("file", nargs="?", default="routes.yaml", help="config file (default: ./routes.yaml)")
    b.add_argument(
        "--profile",
        default=os.environ.get("ENGINE_PROFILE") or None,
        help="overlay profiles/NAME.yaml (default: $ENGINE_PROFILE)",
    )
    b.add_argument("--model", "-m", required=True, help="requested model (picks the route)")
    b.add_argument("-n", type=int, default=20, help="requests per target (default 20)")
    b.add_argument("-c", type=int, default=4, help="requests in flight at most (default 4)")
    b.add_argument("--stream", action="store_true", help="stream the answers (measures TTFT)")
    b.add_argument("--prompt", default="Say hello in one short sentence.", help="the user message")
    b.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default 64)")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.add_argument(
        "--plot", metavar="FILE", help="draw the latency distributions (.png or .svg; needs matplotlib)"
    )
    b.add_argument(
        "--fake", action="store_true", help="start the bundled fake provider on the port the providers use"
    )
    bar = b.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always draw the bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw the bar")


def _usage(args: argparse.Namespace) -> str | None:
    if args.n < 1 or args.c < 1:
        return "-n and -c must be at least 1"
    if args.max_tokens < 1:
        return "--max-tokens must be at least 1"
    if args.plot:
        from engine.benchmark.plot import FORMATS

        if Path(args.plot).suffix.lower() not in FORMATS:
            return "--plot writes .png or .svg"
    return None


@contextlib.contextmanager
def _fake(graph: Any, on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    from engine.demo import fake_port
    from engine.fake import FakeServer

    with FakeServer(port=fake_port(graph)):
        yield


def run(args: argparse.Namespace) -> int:
    """The command (a ``ConfigError`` or ``demo.Refused`` is the caller's to print)."""
    from engine.benchmark.measure import bench_graph
    from engine.compiler import compile_file
    from engine.errors import NoRouteError

    problem = _usage(args)
    if problem:
        print(f"engine bench: {problem}", file=sys.stderr)
        return 2
    graph = compile_file(args.file, profile=args.profile)
    try:
        route, bench = bench_graph(graph, args.model)
    except NoRouteError as exc:
        print(f"engine bench: no route: {exc}", file=sys.stderr)
        return 1
    from engine.demo import Refused

    try:
        with _fake(graph, args.fake):
            rows = asyncio.run(_measure(bench, args))
    except Refused as exc:  # --fake with providers that are not all on one loopback port
        print(f"engine bench: --fake: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken (a fake already running there: leave out --fake)
        print(f"engine bench: --fake cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stream = " streamed" if args.stream else ""
    head = (
        f"engine bench: route #{route.index} [{route.match.describe()}] -> {len(route.targets)} targets, "
        f"{args.n} requests each{stream}, concurrency {args.c}, each target alone (no failover, no retries)"
    )
    if args.json:
        doc = {"route": route.index, "model": args.model, "requests": args.n, "concurrency": args.c}
        doc |= {"stream": args.stream, "targets": [r.to_dict() for r in rows]}
        print(json.dumps(doc, indent=2))
    else:
        from engine.benchmark.report import text

        sys.stdout.write(text(head, rows))
    return _plot(args, rows, head)


async def _measure(bench: Any, args: argparse.Namespace) -> list[Any]:
    from tqdm import tqdm

    from engine.api import Engine
    from engine.benchmark.measure import measure
    from engine.benchmark.report import figures

    request = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    request["max_tokens"] = args.max_tokens
    total = args.n * len(bench.routes)
    show = None if args.progress is None else not args.progress
    with tqdm(total=total, unit="req", file=sys.stderr, disable=show, delay=0.2) as bar:
        async with Engine.from_graph(bench) as eng:
            runs = await measure(
                eng, len(bench.routes), request, args.n, args.c, args.stream, lambda: bar.update(1)
            )
    return [figures(r, args.stream) for r in runs]


def _plot(args: argparse.Namespace, rows: list[Any], head: str) -> int:
    if not args.plot:
        return 0
    from engine.benchmark.plot import available, draw

    if not available():
        print(
            "engine bench: --plot needs matplotlib (pip install 'engine[plot]'): no plot drawn",
            file=sys.stderr,
        )
        return 0
    draw(rows, Path(args.plot), f"engine bench --model {args.model} (-n {args.n} -c {args.c})")
    print(f"engine bench: wrote {args.plot}", file=sys.stderr)
    return 0
