"""``engine batch IN.jsonl -o OUT.jsonl [--concurrency N]``: the command's arguments in, the batch
run, its report on stderr (malformed lines, progress) and stdout (the summary), and the exit code
out: 0 when every line of the input is answered, 1 otherwise (a duplicate ``custom_id`` stops it
before anything is sent), 2 for usage."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    b = sub.add_parser(
        "batch",
        help="run an OpenAI Batch API input file through the routes; resumable",
        description="Routes each line of an OpenAI Batch API input file (custom_id, method, url, "
        "body) and appends its answer to OUT as an OpenAI batch output line the moment it "
        "arrives. Run it again with the same OUT to ask only what is not answered yet.",
    )
    b.add_argument("input", metavar="IN.jsonl", help="OpenAI Batch API input lines")
    b.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="output lines (appended)")
    b.add_argument("--concurrency", "-c", type=int, default=8, help="requests in flight at most (default 8)")
    b.add_argument("--config", "-f", default="routes.yaml", help="config file (default: ./routes.yaml)")
    b.add_argument(
        "--profile",
        default=os.environ.get("ENGINE_PROFILE") or None,
        help="overlay profiles/NAME.yaml (default: $ENGINE_PROFILE)",
    )
    b.add_argument(
        "--fsync",
        choices=("interval", "always"),
        default="interval",
        help="fsync the output once a second (default) or after every line",
    )
    bar = b.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always draw the bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw the bar")
    b.add_argument("--json", action="store_true", help="the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """The command (a ``ConfigError`` is the caller's to print)."""
    from engine.api import Engine
    from engine.batch.lines import read_input, read_previous
    from engine.batch.progress import Progress, Tally

    if args.concurrency < 1:
        print("engine batch: --concurrency must be at least 1", file=sys.stderr)
        return 2
    source, output = Path(args.input), Path(args.output)
    try:
        batch = read_input(source)
    except OSError as exc:
        print(f"engine batch: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for line, why in batch.malformed:
        print(f"{source}:{line}: malformed line skipped: {why}", file=sys.stderr)
    if batch.duplicates:
        for line, cid, first in batch.duplicates:
            print(f"{source}:{line}: duplicate custom_id {cid!r} (first on line {first})", file=sys.stderr)
        print("engine batch: duplicate custom_ids; nothing was sent", file=sys.stderr)
        return 1
    engine = Engine.from_file(args.config, args.profile)
    prev = read_previous(output)
    if prev.rewritten:
        print(
            f"engine batch: {output}: {prev.failed} failed answers to ask again, "
            f"{'a torn last line' if prev.torn else 'no torn line'}, {prev.unreadable} unreadable "
            "lines removed",
            file=sys.stderr,
        )
    todo = [i for i in batch.items if i.custom_id not in prev.answered]
    tally = Tally(total=len(batch.items) + len(batch.malformed), malformed=len(batch.malformed))
    tally.before = len(batch.items) - len(todo)
    bar = Progress(len(todo), sys.stderr, args.progress)
    try:
        asyncio.run(_route(engine, todo, output, tally, args, bar))
    finally:
        bar.close()
    print(json.dumps(tally.to_dict()) if args.json else tally.summary(str(output)))
    return 0 if tally.complete else 1


async def _route(
    engine: Any, todo: list[Any], output: Path, tally: Any, args: argparse.Namespace, bar: Any
) -> None:
    from engine.batch.run import route_batch

    async with engine:
        await route_batch(
            engine, todo, output, tally, concurrency=args.concurrency, fsync=args.fsync, progress=bar
        )
