"""engine: a declarative, configuration-driven routing engine for LLM API requests.

```python
from engine import Engine
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```

The error and result types load with the package; everything else on first use, so that the
compile half (``engine check``, the pytest plugin) never loads the runtime's HTTP, Redis and
breaker libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.errors import (
    AllTargetsFailed,
    ConfigError,
    DeadlineExceeded,
    EngineError,
    ListingError,
    NoRouteError,
    Problem,
    ProviderError,
    RequestError,
    RouteError,
    StreamInterrupted,
)
from engine.result import (
    Attempt,
    Done,
    ReasoningBlock,
    ReasoningDelta,
    Response,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.compiler import compile_file, compile_text
    from engine.graph import RoutingGraph
    from engine.plan import Plan
    from engine.request import Request

__all__ = [
    "AllTargetsFailed",
    "Attempt",
    "ConfigError",
    "DeadlineExceeded",
    "Done",
    "Engine",
    "EngineError",
    "ListingError",
    "NoRouteError",
    "Plan",
    "Problem",
    "ProviderError",
    "ReasoningBlock",
    "ReasoningDelta",
    "Request",
    "RequestError",
    "Response",
    "RouteError",
    "RoutingGraph",
    "StreamInterrupted",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "compile_file",
    "compile_text",
]

_LAZY = {
    "Engine": "engine.api",
    "Plan": "engine.plan",
    "Request": "engine.request",
    "RoutingGraph": "engine.graph",
    "compile_file": "engine.compiler",
    "compile_text": "engine.compiler",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
