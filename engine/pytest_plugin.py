"""A pytest plugin (auto-registered): the ``engine_report`` fixture for config snapshot tests.

```python
def test_routes(engine_report, snapshot):
    assert engine_report("routes.yaml", requests="tests/sample_requests.json") == snapshot
```
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

__all__ = ["engine_report"]


@pytest.fixture
def engine_report() -> Callable[..., str]:
    """``config_report(path, profile=None, requests=..., env=None) -> str``."""
    from engine.snapshots import config_report  # imported late: plugins load in every session

    return config_report
