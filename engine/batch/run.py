"""The batch's requests in, one output line per outcome out: routed through
``Engine.route_many`` (at most ``concurrency`` in flight, each with its route's deadline, rate
limits and circuits), each outcome appended to the output as one whole line the moment it
arrives: one ``write()`` of the line on a file opened for appending, so a kill costs only what
was in flight. fsync: at most once a second (``fsync="interval"``, the default) and at the end,
or after every line (``"always"``); a killed process loses nothing either way (the kernel has the
written lines), a machine that loses power at most the last second's answers, which a rerun
asks again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Final, Literal

from engine.api import Engine
from engine.batch.lines import Item
from engine.batch.progress import Progress, Tally
from engine.batch.shape import answer_line, error_kind, failure_line
from engine.result import Response

__all__ = ["Appender", "FsyncPolicy", "route_batch"]

FsyncPolicy = Literal["interval", "always"]
_INTERVAL: Final = 1.0  # seconds between fsyncs with the "interval" policy


class Appender:
    """Whole lines appended to a file, each with one ``write()``."""

    def __init__(self, path: Path, fsync: FsyncPolicy) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.always = fsync == "always"
        self.synced = time.monotonic()

    def append(self, line: bytes) -> None:
        view = memoryview(line)
        while view:  # a regular file takes it whole; a short write (full disk) goes on
            view = view[os.write(self.fd, view) :]
        if self.always or time.monotonic() - self.synced >= _INTERVAL:
            self.sync()

    def sync(self) -> None:
        os.fsync(self.fd)
        self.synced = time.monotonic()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self.fd)


def _count(tally: Tally, outcome: object) -> None:
    if isinstance(outcome, Response):
        tally.answered += 1
        tally.providers[outcome.provider] += 1
        tally.input_tokens += outcome.usage.input_tokens
        tally.output_tokens += outcome.usage.output_tokens
        if outcome.cost is None:
            tally.unpriced += 1
        else:
            tally.cost += outcome.cost
    else:
        tally.failed[error_kind(outcome)] += 1  # type: ignore[arg-type]


async def route_batch(
    engine: Engine,
    items: list[Item],
    output: Path,
    tally: Tally,
    *,
    concurrency: int,
    fsync: FsyncPolicy = "interval",
    progress: Progress | None = None,
) -> Tally:
    """Route ``items`` and append each outcome to ``output`` as it lands; ``tally`` counts."""
    out = Appender(output, fsync)
    try:
        async with engine.route_many((i.body for i in items), concurrency=concurrency) as many:
            async for index, outcome in many:
                cid = items[index].custom_id
                line = (
                    answer_line(cid, outcome) if isinstance(outcome, Response) else failure_line(cid, outcome)
                )
                out.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                _count(tally, outcome)
                if progress is not None:
                    progress.update(tally)
    finally:
        out.close()
        tally.wall = time.perf_counter() - tally.started
    return tally
