"""What the batch tells while it runs and when it ends: a tqdm progress bar (done of total, rate,
failed, tokens, cost; on stderr, drawn only on a terminal unless asked) and the summary
(answered, failed by error kind, by provider, tokens, cost, wall time)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from tqdm import tqdm

__all__ = ["Progress", "Tally"]


@dataclass(slots=True)
class Tally:
    """This run's counts (``before``: answered by an earlier run, not asked again)."""

    total: int = 0
    before: int = 0
    answered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    providers: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    malformed: int = 0
    started: float = field(default_factory=time.perf_counter)
    wall: float = 0.0

    @property
    def complete(self) -> bool:
        """Every line of the input answered (none malformed, none failed)."""
        return not self.malformed and self.before + self.answered == self.total

    def summary(self, output: str) -> str:
        """The end-of-run report, a few lines."""
        failed = sum(self.failed.values())
        rate = self.answered / self.wall if self.wall > 0 else 0.0
        cost = f"${self.cost:.6f}" + (f" (+{self.unpriced} unpriced)" if self.unpriced else "")
        lines = [
            f"batch: {self.before + self.answered} of {self.total} answered "
            f"({self.answered} now, {self.before} before), {failed} failed, "
            f"{self.malformed} malformed lines -> {output}",
            f"  tokens {self.input_tokens} in / {self.output_tokens} out, cost {cost}, "
            f"wall {self.wall:.2f}s ({rate:.1f} answers/s)",
        ]
        if self.providers:
            lines.append("  by provider: " + ", ".join(f"{k} {v}" for k, v in sorted(self.providers.items())))
        if self.failed:
            lines.append("  failed by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "answered_before": self.before,
            "answered": self.answered,
            "failed": dict(self.failed),
            "by_provider": dict(self.providers),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": round(self.cost, 9),
            "malformed": self.malformed,
            "wall_seconds": round(self.wall, 3),
            "complete": self.complete,
        }


class Progress:
    """The bar over the requests this run sends; ``show``: ``None`` draws it on a terminal only."""

    def __init__(self, total: int, stream: IO[str], show: bool | None) -> None:
        self.bar = tqdm(
            total=total, unit="req", file=stream, disable=(not show) if show is not None else None, delay=0.2
        )

    def update(self, tally: Tally) -> None:
        self.bar.set_postfix_str(
            f"failed={sum(tally.failed.values())} tokens={tally.input_tokens + tally.output_tokens} "
            f"cost=${tally.cost:.4f}",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
