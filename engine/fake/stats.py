"""Each request the fake receives goes in; counts per path, kind, model and status, and a bounded log
of requests (headers and query keys redacted to their names, but for the values of protocol
headers that hold no secret: anthropic-beta, anthropic-version) come out."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

__all__ = ["Stats"]


_PROTOCOL = frozenset({"anthropic-beta", "anthropic-version"})


class Stats:
    """Thread-safe request counters and a log of the last ``log_size`` requests. A request still
    running when the counters are reset is not counted again when it ends (a test's stats are its
    own, whatever an earlier test left in flight)."""

    def __init__(self, log_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._log_size = log_size
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.paths: Counter[str] = Counter()
            self.kinds: Counter[str] = Counter()
            self.models: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()
            self.log: deque[dict[str, Any]] = deque(maxlen=self._log_size)
            self._open: set[int] = set()  # id() of this generation's entries not yet done

    def record(self, method: str, path: str, kind: str, headers: Any, query: Any) -> dict[str, Any]:
        """Count a request and log it; the entry returned is completed by ``model``/``done``."""
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "kind": kind,
            "model": None,
            "stream": False,
            "headers": sorted({k.lower() for k in headers}),
            # the values of protocol headers that hold no secret
            "protocol": {k.lower(): v for k, v in headers.items() if k.lower() in _PROTOCOL},
            "query": sorted(query),
            "body": None,
            "fault": "",
            "status": None,
        }
        with self._lock:
            self.total += 1
            self.paths[path] += 1
            self.kinds[kind] += 1
            self.log.append(entry)
            self._open.add(id(entry))
        return entry

    def model(self, entry: dict[str, Any], model: str | None) -> None:
        entry["model"] = model
        if model:
            with self._lock:
                if id(entry) in self._open:
                    self.models[model] += 1

    def done(self, entry: dict[str, Any], status: int | str) -> None:
        """Note the outcome: an HTTP status, or "reset" / "truncated" / "dropped"."""
        entry["status"] = status
        with self._lock:
            if id(entry) in self._open:
                self._open.discard(id(entry))
                self.statuses[str(status)] += 1

    def snapshot(self, log: bool = True) -> dict[str, Any]:
        """A JSON-ready copy: ``requests``, ``paths``, ``kinds``, ``models``, ``statuses``, ``log``."""
        with self._lock:
            out: dict[str, Any] = {
                "requests": self.total,
                "paths": dict(self.paths),
                "kinds": dict(self.kinds),
                "models": dict(self.models),
                "statuses": dict(self.statuses),
            }
            if log:
                out["log"] = [dict(e) for e in self.log]
        return out
