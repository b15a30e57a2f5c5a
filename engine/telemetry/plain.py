"""Counters, gauges and histograms as plain Python numbers (no library), exposed to
``prometheus_client`` at scrape time by ``metrics.PlainCollector``.

The request path adds to attributes of a child bound once per label tuple: no lock, no value
object, no exemplar check (``prometheus_client`` spends ~1 µs per add on those). Each engine keeps
its own ``Store``, written only from its event loop; one ``PlainCollector`` per registry adds up the
stores on it (``merge``), so two engines on one registry still report one series. Not for multiprocess mode:
``prometheus_client`` only sees values written through its own metric objects (``metrics.py``
uses those when ``PROMETHEUS_MULTIPROC_DIR`` is set).
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["Family", "Store", "merge"]

_STAMP: Final = itertools.count(1)  # orders gauge sets across stores ("mostrecent")


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class GaugeChild:
    __slots__ = ("stamp", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.stamp = 0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)
        self.stamp = next(_STAMP)


class HistogramChild:
    """Bucket counts (not cumulative; the last is ``+Inf``) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # bucket ``le`` counts amount <= le
        self.sum += amount


class Family:
    """One metric's children by label tuple; ``labels(*values)`` as ``prometheus_client``'s."""

    __slots__ = ("bounds", "children", "doc", "kind", "labelnames", "mode", "name")

    def __init__(
        self,
        kind: str,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        *,
        bounds: Sequence[float] = (),
        mode: str = "livesum",
    ) -> None:
        self.kind, self.name, self.doc, self.labelnames = kind, name, doc, tuple(labelnames)
        self.bounds, self.mode = tuple(float(b) for b in bounds), mode
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}")
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            if self.kind == "histogram":
                child = HistogramChild(self.bounds)
            else:
                child = CounterChild() if self.kind == "counter" else GaugeChild()
            self.children[key] = child
        return child


class Store:
    """One engine's families, made in the order they are exposed."""

    __slots__ = ("__weakref__", "families")

    def __init__(self) -> None:
        self.families: list[Family] = []

    def counter(self, name: str, doc: str, labelnames: Sequence[str]) -> Family:
        return self._add(Family("counter", name, doc, labelnames))

    def gauge(self, name: str, doc: str, labelnames: Sequence[str], mode: str) -> Family:
        return self._add(Family("gauge", name, doc, labelnames, mode=mode))

    def histogram(self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]) -> Family:
        return self._add(Family("histogram", name, doc, labelnames, bounds=buckets))

    def _add(self, family: Family) -> Family:
        self.families.append(family)
        return family


def merge(families: list[Family]) -> dict[tuple[str, ...], Any]:
    """Label tuple -> value (a histogram: its counts and sum) over every store's family."""
    out: dict[tuple[str, ...], Any] = {}
    stamps: dict[tuple[str, ...], int] = {}
    for f in families:
        for labels, child in list(f.children.items()):  # copied: a loop may add meanwhile
            if f.kind == "histogram":
                counts, total = out.get(labels, ([0] * len(child.counts), 0.0))
                out[labels] = ([a + b for a, b in zip(counts, child.counts, strict=True)], total + child.sum)
            elif f.kind == "gauge" and f.mode == "mostrecent":
                if labels not in out or child.stamp > stamps[labels]:
                    out[labels], stamps[labels] = child.value, child.stamp
            else:
                out[labels] = out.get(labels, 0.0) + child.value
    return out
