"""A config file and sample requests in, one deterministic text report out, for snapshot tests.

The report is ``graph.describe()`` followed by the plan of every sample request, compiled with an
empty environment so it does not depend on the machine. Put it under syrupy (or any snapshot tool)
and every change to routes.yaml or a profile shows up as a reviewable diff.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.compiler import compile_file
from engine.errors import NoRouteError
from engine.plan import build_plan

__all__ = ["config_report", "load_requests"]


def load_requests(path: str | Path) -> dict[str, dict[str, Any]]:
    """Sample requests from a JSON file: ``{"name": {request}, ...}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of name -> request")
    return data


def config_report(
    path: str | Path = "routes.yaml",
    *,
    profile: str | None = None,
    requests: Mapping[str, Mapping[str, Any]] | str | Path = (),  # type: ignore[assignment]
    env: Mapping[str, str] | None = None,
) -> str:
    """``describe()`` of the compiled graph plus a plan per sample request, as one text."""
    graph = compile_file(path, profile=profile, env={} if env is None else env)
    reqs = load_requests(requests) if isinstance(requests, str | Path) else dict(requests)
    parts = [f"# graph: {path}" + (f" (profile {profile})" if profile else ""), graph.describe()]
    for name in sorted(reqs):
        parts.append(f"# plan: {name}")
        try:
            parts.append(build_plan(graph, reqs[name]).text())
        except NoRouteError as exc:
            parts.append(f"no route: {exc}\n")
    return "\n".join(parts)
