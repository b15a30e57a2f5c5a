"""engine: a declarative, configuration-driven routing engine for LLM API requests.

```python
from engine import Engine
async with Engine.from_file("routes.yaml") as eng:
    resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
```

Every type a caller receives is exported here: the results and stream events, the errors, the
``Plan`` and its parts, the event classes ``Engine.on`` delivers, health and model listings. The
error and result types load with the package; everything else on first use (PEP 562), so that
the compile half (``engine check``, the pytest plugin) never loads the runtime's HTTP, Redis and
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
    NativeEvent,
    ReasoningBlock,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.compiler import compile_file, compile_text
    from engine.graph import Price, RoutingGraph
    from engine.plan import (
        Plan,
        PlanBody,
        PlanBreaker,
        PlanCache,
        PlanEstimate,
        PlanPrice,
        PlanRequest,
        PlanRetry,
        PlanRoute,
        PlanSpeed,
        PlanTarget,
        PlanTreeGroup,
        PlanTreeNode,
        PlanTreeTarget,
    )
    from engine.request import Request
    from engine.runtime.events import (
        AttemptEnded,
        AttemptStarted,
        BreakerChanged,
        Event,
        EventName,
        FailingOver,
        Retrying,
        StateChanged,
    )
    from engine.runtime.health import ProviderHealth
    from engine.runtime.loop import SyncStream
    from engine.runtime.many import RouteMany, SyncRouteMany
    from engine.runtime.state.base import StateWarning
    from engine.runtime.state.listings import ListedModel, ModelListing, RegistryStats
    from engine.runtime.streaming import EventStream
    from engine.sync import SyncEngine
    from engine.telemetry.health import Health

__all__ = [
    "AllTargetsFailed",
    "Attempt",
    "AttemptEnded",
    "AttemptStarted",
    "BreakerChanged",
    "ConfigError",
    "DeadlineExceeded",
    "Done",
    "Engine",
    "EngineError",
    "Event",
    "EventName",
    "EventStream",
    "FailingOver",
    "Health",
    "ListedModel",
    "ListingError",
    "ModelListing",
    "NativeEvent",
    "NoRouteError",
    "Plan",
    "PlanBody",
    "PlanBreaker",
    "PlanCache",
    "PlanEstimate",
    "PlanPrice",
    "PlanRequest",
    "PlanRetry",
    "PlanRoute",
    "PlanSpeed",
    "PlanTarget",
    "PlanTreeGroup",
    "PlanTreeNode",
    "PlanTreeTarget",
    "Price",
    "Problem",
    "ProviderError",
    "ProviderHealth",
    "ReasoningBlock",
    "ReasoningDelta",
    "RegistryStats",
    "Request",
    "RequestError",
    "Response",
    "Retrying",
    "RouteError",
    "RouteMany",
    "RoutingGraph",
    "StateChanged",
    "StateWarning",
    "StreamEvent",
    "StreamInterrupted",
    "SyncEngine",
    "SyncRouteMany",
    "SyncStream",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "compile_file",
    "compile_text",
]

_PLAN = (
    "Plan",
    "PlanBody",
    "PlanBreaker",
    "PlanCache",
    "PlanEstimate",
    "PlanPrice",
    "PlanRequest",
    "PlanRetry",
    "PlanRoute",
    "PlanSpeed",
    "PlanTarget",
    "PlanTreeGroup",
    "PlanTreeNode",
    "PlanTreeTarget",
)
_EVENTS = (
    "AttemptEnded",
    "AttemptStarted",
    "BreakerChanged",
    "Event",
    "EventName",
    "FailingOver",
    "Retrying",
    "StateChanged",
)

# name -> the module it loads from on first use
_LAZY = {
    "Engine": "engine.api",
    "SyncEngine": "engine.sync",
    "SyncStream": "engine.runtime.loop",
    "RouteMany": "engine.runtime.many",
    "SyncRouteMany": "engine.runtime.many",
    "EventStream": "engine.runtime.streaming",
    "ListedModel": "engine.runtime.state.listings",
    "ModelListing": "engine.runtime.state.listings",
    "Price": "engine.graph",
    "ProviderHealth": "engine.runtime.health",
    "Health": "engine.telemetry.health",
    "RegistryStats": "engine.runtime.state.listings",
    "Request": "engine.request",
    "RoutingGraph": "engine.graph",
    "StateWarning": "engine.runtime.state.base",
    "compile_file": "engine.compiler",
    "compile_text": "engine.compiler",
    **dict.fromkeys(_PLAN, "engine.plan"),
    **dict.fromkeys(_EVENTS, "engine.runtime.events"),
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
