"""What the engine will do with routes.yaml (and each profile), as a reviewed snapshot: any change
to the config fails this test with a readable diff until `pytest --snapshot-update` records it."""

from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent  # the repository root, where routes.yaml is


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the report names files relative to here: the same on every machine


@pytest.mark.parametrize("profile", [None, "production"])
def test_routes(engine_report, snapshot, profile):
    assert engine_report("routes.yaml", profile=profile, requests="tests/sample_requests.json") == snapshot
