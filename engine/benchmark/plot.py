"""Each target's answered latencies in, a picture out: their distributions side by side (a box
plot per target, in milliseconds), written as PNG or SVG by the file's suffix. Needs matplotlib
(the ``plot`` extra); ``available()`` says whether it is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.benchmark.report import Figures

__all__ = ["FORMATS", "available", "draw"]

FORMATS = (".png", ".svg")


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw(rows: list[Figures], path: Path, title: str) -> None:
    """Write the latency box plots of ``rows`` to ``path`` (.png or .svg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(rows) + 2), 4.5))
    try:
        data = [[v * 1000 for v in r.latencies] or [0.0] for r in rows]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(rows) + 1), [r.target for r in rows], rotation=20, ha="right")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format=path.suffix.lstrip("."))
    finally:
        plt.close(fig)
