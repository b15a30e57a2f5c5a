"""A graph, a requested model and a request count in, each reachable target's raw samples out.

Each target the model's route can reach gets a route of its own (matched by a metadata key the
bench sets), its provider copied without retries and breaker, and the response cache off, so each
request is one try measured alone. Targets are measured one after another (they never compete);
each target's N requests go through ``Engine.route_many`` with at most C in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from engine.api import Engine
from engine.errors import NoRouteError, RequestError, RouteError
from engine.graph import Match, Route, RoutingGraph, Target, frozen_map
from engine.result import Done, Response

__all__ = ["BENCH_KEY", "Sample", "TargetRun", "bench_graph", "measure"]

BENCH_KEY: Final = "engine_bench"  # the metadata key that picks a target's own route


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: ``kind`` is ``None`` when it answered, else what went wrong."""

    latency: float
    kind: str | None = None
    ttft: float | None = None
    output_tokens: int = 0
    cost: float | None = None


@dataclass(slots=True)
class TargetRun:
    target: str
    samples: list[Sample] = field(default_factory=list)


def bench_graph(graph: RoutingGraph, model: str) -> tuple[Route, RoutingGraph]:
    """The route ``model`` takes, and a graph with one route per target it can reach (route ``i``
    matches metadata ``{BENCH_KEY: i}``), each provider without retries or breaker."""
    route = graph.match(model, {})
    if route is None:
        raise NoRouteError(f"no route matches model {model!r}")
    routes = []
    for i, t in enumerate(route.targets):
        p = t.provider
        alone = dataclasses.replace(p, speed=dataclasses.replace(p.speed, retries=0), breaker=None)
        target = Target(alone, t.model)
        routes.append(
            Route(i, Match.build(None, {BENCH_KEY: i}), target, route.deadline, route.deadline, (target,))
        )
    cache = dataclasses.replace(graph.cache, responses_ttl=None)
    providers = frozen_map({r.targets[0].provider.name: r.targets[0].provider for r in routes})
    return route, dataclasses.replace(
        graph, routes=tuple(routes), groups=frozen_map(), providers=providers, cache=cache
    )


def _sample(outcome: Response | Done | RouteError | RequestError) -> Sample:
    if isinstance(outcome, Response):
        return Sample(outcome.latency, None, None, outcome.usage.output_tokens, outcome.cost)
    if isinstance(outcome, Done):
        return Sample(outcome.latency, None, outcome.ttft, outcome.usage.output_tokens, outcome.cost)
    attempts = outcome.attempts if isinstance(outcome, RouteError) else []
    last = attempts[-1] if attempts else None
    kind = last.kind if last is not None and last.kind else type(outcome).__name__
    return Sample(sum(a.latency for a in attempts), kind)


async def _streamed(eng: Engine, request: dict[str, Any]) -> Response | Done | RouteError:
    """One streamed request read to its end: its ``Done``, or the error it ended with."""
    try:
        async with eng.stream(request) as events:
            async for event in events:
                if isinstance(event, Done):
                    return event
    except RouteError as exc:
        return exc
    raise RuntimeError("a stream ended without its Done event")  # the engine always ends one


async def measure(
    eng: Engine,
    routes: int,
    request: dict[str, Any],
    n: int,
    concurrency: int,
    stream: bool,
    tick: Callable[[], None] = lambda: None,
) -> list[TargetRun]:
    """``n`` copies of ``request`` to each of the ``routes`` targets of ``eng``'s bench graph,
    one target after another; ``tick`` after each request."""
    runs = []
    for i in range(routes):
        run = TargetRun(eng.graph.routes[i].targets[0].key)
        reqs = [{**request, "metadata": {**(request.get("metadata") or {}), BENCH_KEY: i}} for _ in range(n)]
        if stream:
            gate = asyncio.Semaphore(concurrency)

            async def one(
                req: dict[str, Any], gate: asyncio.Semaphore = gate
            ) -> Response | Done | RouteError:
                async with gate:
                    return await _streamed(eng, req)

            for landed in asyncio.as_completed([one(r) for r in reqs]):
                run.samples.append(_sample(await landed))
                tick()
        else:
            async with eng.route_many(reqs, concurrency=concurrency) as many:
                async for _, outcome in many:
                    run.samples.append(_sample(outcome))
                    tick()
        runs.append(run)
    return runs
