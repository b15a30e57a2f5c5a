"""Each target's samples in, its figures out: latency p50/p95/p99 of the answered requests, time
to first token (streamed), output tokens per second (output tokens / (latency - TTFT) streamed,
/ latency otherwise; the median), error rate and errors by kind, cost. ``text`` is the table
``engine bench`` prints; ``to_dict`` its ``--json``."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from engine.benchmark.measure import Sample, TargetRun

__all__ = ["Figures", "figures", "percentile", "text"]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(q * len(ordered))), len(ordered)) - 1]


def _rate(s: Sample) -> float | None:
    span = s.latency - (s.ttft or 0.0)
    return s.output_tokens / span if s.output_tokens and span > 0 else None


@dataclass(frozen=True, slots=True)
class Figures:
    target: str
    requests: int
    ok: int
    errors: dict[str, int]
    latency: dict[str, float | None]  # p50, p95, p99 (seconds)
    ttft: dict[str, float | None] | None  # the same, streamed only
    output_tokens_per_second: float | None
    cost: float | None  # USD over every answered request; None: unpriced
    latencies: tuple[float, ...]  # every answered request's, for the plot

    @property
    def error_rate(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "requests": self.requests,
            "ok": self.ok,
            "error_rate": round(self.error_rate, 4),
            "errors": self.errors,
            "latency": self.latency,
            "ttft": self.ttft,
            "output_tokens_per_second": self.output_tokens_per_second,
            "cost": self.cost,
            "cost_per_request": round(self.cost / self.ok, 12) if self.cost is not None and self.ok else None,
        }


def _quantiles(values: list[float]) -> dict[str, float | None]:
    out = {f"p{int(q * 100)}": percentile(values, q) for q in (0.5, 0.95, 0.99)}
    return {k: round(v, 6) if v is not None else None for k, v in out.items()}


def figures(run: TargetRun, stream: bool) -> Figures:
    ok = [s for s in run.samples if s.kind is None]
    rates = [r for s in ok if (r := _rate(s)) is not None]
    costs = [s.cost for s in ok if s.cost is not None]
    return Figures(
        run.target,
        len(run.samples),
        len(ok),
        dict(Counter(s.kind for s in run.samples if s.kind is not None)),
        _quantiles([s.latency for s in ok]),
        _quantiles([s.ttft for s in ok if s.ttft is not None]) if stream else None,
        round(statistics.median(rates), 1) if rates else None,
        round(sum(costs), 12) if costs else None,
        tuple(s.latency for s in ok),
    )


_WIDTHS = (5, 6, 9, 9, 9, 9, 8, 11)


def _ms(value: float | None) -> str:
    return f"{value * 1000:.1f}ms" if value is not None else "-"


def text(head: str, rows: list[Figures]) -> str:
    """The table: one line per target."""
    width = max([len("target"), *(len(r.target) for r in rows)])
    names = ("ok", "err%", "p50", "p95", "p99", "ttft p50", "tok/s", "cost")
    cols = f"{'target':<{width}}  " + " ".join(f"{n:>{w}}" for n, w in zip(names, _WIDTHS, strict=True))
    cols += "  errors"
    out = [head, cols]
    for r in rows:
        ttft = r.ttft["p50"] if r.ttft else None
        rate = f"{r.output_tokens_per_second:.1f}" if r.output_tokens_per_second is not None else "-"
        cost = f"${r.cost:.6f}" if r.cost is not None else "no price"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "-"
        lat = r.latency
        cells = [str(r.ok), f"{r.error_rate:.1%}", _ms(lat["p50"]), _ms(lat["p95"]), _ms(lat["p99"])]
        cells += [_ms(ttft), rate, cost]
        line = " ".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS, strict=True))
        out.append(f"{r.target:<{width}}  {line}  {errors}")
    return "\n".join(out) + "\n"
