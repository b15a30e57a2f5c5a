"""Snapshot-tested config changes: any edit to routes.yaml or a profile shows up as a reviewable
diff of graph.describe() and of the plans of the sample requests in tests/sample_requests.json.

After an intended change, review and accept it with ``pytest tests/test_config_snapshots.py
--snapshot-update``. The report is compiled with an empty environment, so it does not depend on
the machine, and it never contains a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.compiler import compile_file

ROOT = Path(__file__).parent.parent
REQUESTS = "tests/sample_requests.json"


@pytest.fixture(autouse=True)
def _at_the_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # paths in the report are relative: the same on every machine


@pytest.mark.parametrize("profile", [None, "ci", "local", "production"])
def test_config_snapshot(engine_report: Callable[..., str], snapshot: Any, profile: str | None) -> None:
    assert engine_report("routes.yaml", profile=profile, requests=REQUESTS) == snapshot


def test_sample_requests_cover_every_route() -> None:
    graph = compile_file("routes.yaml", env={})
    requests = json.loads(Path(REQUESTS).read_text(encoding="utf-8"))
    hit = set()
    for request in requests.values():
        route = graph.match(request["model"], request.get("metadata", {}))
        assert route is not None
        hit.add(route.index)
    assert hit == {r.index for r in graph.routes}
