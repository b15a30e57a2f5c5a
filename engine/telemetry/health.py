"""Recent-window health per key (a target, a provider): latency p50/p95 and a score 0–1.

Pure arithmetic, no I/O and no clock. Each key keeps a ring of its last ``size`` tries (a latency
and whether it answered), so memory is bounded (``size`` floats and bools per key) and a try costs
O(1): it overwrites the oldest slot and keeps a running sum of the answered latencies.

The score is the success rate over the window, weighed by latency against the key's read timeout
(its speed category's ``read``): ``success × (1 − ½·min(p95 / read, 1))``. A target that always
answers fast scores near 1; one that answers at its timeout scores half its success rate; one that
always fails scores 0. Skipped tries (open circuit, rate limited: nothing was sent) are counted
apart and do not move the score.

The engine keeps one tracker (``Shared.health``), fed by the try lifecycle whether telemetry is on
or off: ``t:TARGET`` and ``p:PROVIDER`` per try, and ``m:GROUP>MEMBER`` per group member run
(``least_latency``'s observations). Each window also keeps moving averages of answered latency and
of failure (``ALPHA``, O(1) per try): ``least_latency`` ranks members by them and the health view
reports them beside ``p50``/``p95`` (sorted on demand, only when asked) of the same windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["ALPHA", "DEFAULT_WINDOW", "Health", "HealthTracker", "Window", "score"]

DEFAULT_WINDOW: Final = 128
ALPHA: Final = 0.3  # weight of the newest try in the moving averages


class Window:
    """The last ``size`` tries of one key."""

    __slots__ = (
        "_answered",
        "_latency",
        "_next",
        "_ok",
        "_ok_count",
        "_sum",
        "count",
        "failed_total",
        "failing",
        "moving",
        "ok_total",
        "skipped_total",
    )

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("a window holds at least one try")
        self._latency = [0.0] * size
        self._ok = [False] * size
        self._next = 0
        self.count = 0  # slots filled, at most size
        self._ok_count = 0
        self._sum = 0.0  # of the answered slots' latencies
        self.ok_total = self.failed_total = self.skipped_total = 0
        self.moving: float | None = None  # moving average of answered latency
        self.failing = 0.0  # moving average of failure (0 answered, 1 failed)

    def record(self, ok: bool, latency: float) -> None:
        """One try that reached the provider: answered (``ok``) or failed, after ``latency``."""
        i = self._next
        if self.count == len(self._ok):
            if self._ok[i]:
                self._ok_count -= 1
                self._sum -= self._latency[i]
        else:
            self.count += 1
        self._ok[i] = ok
        self._latency[i] = latency
        if ok:
            self._ok_count += 1
            self._sum += latency
            self.ok_total += 1
            old = self.moving
            self.moving = latency if old is None else old + ALPHA * (latency - old)
            self.failing -= ALPHA * self.failing
        else:
            self.failed_total += 1
            self.failing += ALPHA * (1.0 - self.failing)
        self._next = (i + 1) % len(self._ok)

    def skipped(self) -> None:
        self.skipped_total += 1

    @property
    def success_rate(self) -> float | None:
        return self._ok_count / self.count if self.count else None

    @property
    def mean(self) -> float | None:
        """Mean latency of the answered tries in the window (O(1))."""
        return self._sum / self._ok_count if self._ok_count else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (nearest rank) of the answered latencies in the window."""
        values = sorted(lat for lat, ok in zip(self._latency, self._ok, strict=True) if ok)
        if not values:
            return None
        rank = min(max(1, math.ceil(q * len(values))), len(values))
        return values[rank - 1]

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p95(self) -> float | None:
        return self.quantile(0.95)


def score(success_rate: float | None, p95: float | None, read_timeout: float) -> float:
    """0–1: the success rate weighed by p95 latency against the read timeout (1 with no tries)."""
    if success_rate is None:
        return 1.0
    slowness = min(p95 / read_timeout, 1.0) if p95 is not None and read_timeout > 0 else 0.0
    return round(success_rate * (1.0 - 0.5 * slowness), 4)


@dataclass(frozen=True, slots=True)
class Health:
    """One key's view: score, latency p50/p95 over the window and its moving average (seconds),
    lifetime counts."""

    key: str
    score: float
    p50: float | None
    p95: float | None
    success_rate: float | None
    ok: int
    failed: int
    skipped: int
    window: int  # tries in the window
    latency: float | None = None  # moving average of answered latency


class HealthTracker:
    """A ``Window`` per key, made on first use."""

    __slots__ = ("_size", "windows")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self._size = size
        self.windows: dict[str, Window] = {}

    def window(self, key: str) -> Window:
        w = self.windows.get(key)
        if w is None:
            w = self.windows[key] = Window(self._size)
        return w

    def record(self, key: str, ok: bool, latency: float) -> None:
        self.window(key).record(ok, latency)

    def skipped(self, key: str) -> None:
        self.window(key).skipped()

    def health(self, key: str, read_timeout: float) -> Health:
        w = self.window(key)
        p95, rate = w.p95, w.success_rate
        return Health(
            key,
            score(rate, p95, read_timeout),
            w.p50,
            p95,
            rate,
            w.ok_total,
            w.failed_total,
            w.skipped_total,
            w.count,
            w.moving,
        )

    def report(self, read_timeouts: Mapping[str, float]) -> Iterator[Health]:
        """The health of every key seen, in name order; ``read_timeouts`` per key (default 30s)."""
        for key in sorted(self.windows):
            yield self.health(key, read_timeouts.get(key, 30.0))
