"""engine: a declarative, configuration-driven routing engine for LLM API requests.

```python
from engine import Engine
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```
"""

from engine.api import Engine
from engine.compiler import compile_file, compile_text
from engine.errors import (
    AllTargetsFailed,
    ConfigError,
    DeadlineExceeded,
    EngineError,
    NoRouteError,
    Problem,
    ProviderError,
    RequestError,
    RouteError,
    StreamInterrupted,
)
from engine.graph import RoutingGraph
from engine.plan import Plan
from engine.request import Request
from engine.result import Attempt, Done, Response, TextDelta, ToolCall, ToolCallDelta, Usage

__all__ = [
    "AllTargetsFailed",
    "Attempt",
    "ConfigError",
    "DeadlineExceeded",
    "Done",
    "Engine",
    "EngineError",
    "NoRouteError",
    "Plan",
    "Problem",
    "ProviderError",
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
