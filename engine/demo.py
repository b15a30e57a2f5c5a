"""A config file in, a narrated run on stdout: the bundled fake provider is started on the port the
config's providers point at, faults are programmed into it, and real requests are routed through
the config. Each step says what the demo does to the fake; what came of it is told only from the
engine's events and the attempts (a circuit is said to open only when a ``breaker`` event says so).
Steps the config gives no material for (no hedged group, no breaker, no response cache) say why
they are skipped. A config whose providers are not on one loopback port is refused.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.api import Engine
from engine.compiler import compile_file
from engine.errors import RouteError
from engine.fake import FakeServer
from engine.graph import Group, Provider, Route, RoutingGraph, Target
from engine.mermaid import to_mermaid
from engine.plan import build_plan
from engine.result import Attempt, Done, Response, TextDelta
from engine.runtime.events import BreakerChanged, FailingOver, Retrying
from engine.strategies import STRATEGIES
from engine.values import Secret

__all__ = ["Refused", "run"]

_LOOPBACK = ("127.0.0.1", "localhost")  # where FakeServer listens (IPv4)
_STATUSES = (503, 502, 500, 504, 429, 408)  # preferred order when programming a failure


class Refused(Exception):
    """The config cannot be demonstrated (the message says why and what to do)."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def fake_port(graph: RoutingGraph) -> int:
    """The one loopback port every provider points at; ``Refused`` otherwise (the demo starts one
    fake provider and must never send a request anywhere else)."""
    ports: dict[int, list[str]] = {}
    elsewhere = []
    for p in graph.providers.values():
        url = urlsplit(_url(p))
        try:
            port = url.port if url.hostname in _LOOPBACK else None
        except ValueError:  # not a number
            port = None
        if port is not None:
            ports.setdefault(port, []).append(p.name)
        else:
            elsewhere.append(p.name)
    if elsewhere or len(ports) != 1:
        where = (
            f"{', '.join(elsewhere)} point{'s' if len(elsewhere) == 1 else ''} elsewhere"
            if elsewhere
            else "the providers point at ports " + ", ".join(map(str, ports))
        )
        raise Refused(
            "demo: every provider must point at the one fake provider the demo starts "
            f"(http://127.0.0.1:PORT), but {where}; use a profile that does "
            "(--profile ci)"
        )
    return next(iter(ports))


@dataclass(frozen=True, slots=True)
class Pick:
    """A route, a request that takes it, and its first target when the order is fixed."""

    route: Route
    request: dict[str, Any]

    @property
    def first(self) -> Target | None:
        to = self.route.to
        if isinstance(to, Target):
            return to
        if STRATEGIES[to.strategy].fixed_order and isinstance(to.members[0].node, Target):
            return to.members[0].node
        return None

    def title(self) -> str:
        to = self.route.to
        where = (
            f"group '{to.name}' ({to.strategy}, {len(self.route.targets)} targets)"
            if isinstance(to, Group)
            else to.key
        )
        return f"route #{self.route.index} [{self.route.match.describe()}] -> {where}"


def _request_for(graph: RoutingGraph, route: Route) -> dict[str, Any] | None:
    """A request that ``route`` takes (first match wins, so an earlier route may take it)."""
    pattern = route.match.model
    to = route.to
    if pattern is None:
        model = to.model if isinstance(to, Target) and to.model else "demo-model"
    elif "[" in pattern:
        return None
    else:
        declared = [m for t in route.targets for m in t.provider.models]
        model = next(
            (m for m in declared if route.match.accepts_model(m)),
            pattern.replace("*", "demo").replace("?", "x"),
        )
    metadata = dict(route.match.metadata)
    if graph.match(model, metadata) is not route:
        return None
    req: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    if metadata:
        req["metadata"] = metadata
    return req


def picks(graph: RoutingGraph) -> tuple[Pick | None, Pick | None]:
    """(the route to rehearse failures on, a route to a hedged group), either may be missing.
    Preferred: a fixed order over the most targets."""
    found = [Pick(r, req) for r in graph.routes if (req := _request_for(graph, r)) is not None]
    ranked = sorted(found, key=lambda p: (p.first is None, -len(p.route.targets), p.route.index))
    hedged = [
        p
        for p in found
        if isinstance(p.route.to, Group)
        and STRATEGIES[p.route.to.strategy].races
        and p.first is not None
        and len(p.route.to.members) > 1
    ]
    return (ranked[0] if ranked else None), (hedged[0] if hedged else None)


def _with(req: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    return {**req, "messages": [{"role": "user", "content": text}], **extra}


class Narrator:
    """Runs the steps against one engine and one fake, telling what the events say."""

    def __init__(self, eng: Engine, srv: FakeServer, graph: RoutingGraph) -> None:
        self.eng, self.srv, self.graph = eng, srv, graph
        self.events: list[Any] = []
        self.step = 0
        for name in ("retry", "failover", "breaker"):
            eng.on(name, self._hear)

    def _hear(self, event: Any) -> None:
        self.events.append(event)

    # -- telling --------------------------------------------------------------------------------

    def heading(self, text: str) -> None:
        self.step += 1
        _say(f"-- {self.step}. {text}")

    def skip(self, text: str) -> None:
        self.heading(f"skipped: {text}")

    def _tell_events(self) -> list[Any]:
        events, self.events = self.events, []
        for e in events:
            if isinstance(e, Retrying):
                why = e.attempt.status or e.attempt.error
                _say(f"    event: retry {e.target} in {e.delay * 1000:.0f}ms after {why}")
            elif isinstance(e, FailingOver):
                _say(f"    event: failover from {e.target}")
            elif isinstance(e, BreakerChanged):
                _say(f"    event: circuit {e.circuit} is {e.state}")
        return events

    def tell(self, result: Response | Done | RouteError, text: str = "") -> list[Any]:
        events = self._tell_events()
        if isinstance(result, RouteError):
            _say(f"   {type(result).__name__}: {str(result).splitlines()[0]}")
        else:
            cost = f"${result.cost:.8f}" if result.cost is not None else "n/a"
            extra = (
                f"ttft {result.ttft * 1000:.1f}ms, "
                if isinstance(result, Done) and result.ttft is not None
                else f"{result.latency * 1000:.1f}ms, "
            )
            shown = text if isinstance(result, Done) else getattr(result, "text", "")
            _say(
                f"   {result.provider}/{result.model}: {shown!r}  ({extra}"
                f"{result.usage.input_tokens}+{result.usage.output_tokens} tokens, cost {cost})"
            )
        for a in result.attempts:
            _say(f"      attempt  {a}")
        _say(f"   what happened: {summary(result, events)}")
        return events

    async def ask(self, request: dict[str, Any]) -> tuple[Response | RouteError, list[Any]]:
        try:
            resp: Response | RouteError = await self.eng.route(request)
        except RouteError as exc:
            resp = exc
        return resp, self.tell(resp)

    # -- the fake -------------------------------------------------------------------------------

    def program(self, target: Target, model: str, faults: list[str]) -> None:
        """Faults for the chat calls of one target: its kind (or its own path) and its model."""
        path = urlsplit(_url(target.provider)).path.rstrip("/")
        shared = [
            p
            for p in self.graph.providers.values()
            if p.name != target.provider.name and urlsplit(_url(p)).path.rstrip("/") == path
        ]
        where = target.provider.kind if shared or not path else path + "/"
        self.srv.program(where, faults, model=model)


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _url(p: Provider) -> str:
    return p.base_url.reveal() if isinstance(p.base_url, Secret) else p.base_url


def summary(result: Response | Done | RouteError, events: list[Any]) -> str:
    """One sentence from the attempts and events, nothing else."""
    bits: list[str] = []
    tries: dict[str, list[Attempt]] = {}
    for a in result.attempts:
        tries.setdefault(a.target, []).append(a)
    for target, attempts in tries.items():
        outcomes = [a.outcome for a in attempts]
        sent = [a for a in attempts if a.outcome not in ("skipped", "cached", "coalesced")]
        if "skipped" in outcomes:
            why = next(a.error for a in attempts if a.outcome == "skipped") or "skipped"
            bits.append(f"{target} skipped ({why}, nothing sent)")
        if len(sent) > 1:
            bits.append(f"{target} tried {len(sent)} times")
        if "failover" in outcomes:
            bits.append(f"gave up on {target}")
        if "cancelled" in outcomes:
            bits.append(f"{target} cancelled")
    for e in events:
        if isinstance(e, BreakerChanged):
            bits.append(f"circuit {e.circuit} became {e.state}")
    if isinstance(result, RouteError):
        bits.append(f"{type(result).__name__} raised")
    else:
        how = " from the response cache" if result.cached else ""
        bits.append(f"answered by {result.provider}/{result.model}{how}")
    return "; ".join(bits)


async def _steps(n: Narrator, pick: Pick | None, hedged: Pick | None) -> None:
    g = n.graph
    if pick is None:
        n.skip("no route can be taken by a request the demo can write")
        return
    req = pick.request
    n.heading(f"a plain request (model={req['model']}): {pick.title()}")
    await n.ask(_with(req, "Hello there"))
    first = pick.first
    if first is None:
        n.skip(
            f"retries, failover and circuits: the order of {pick.title()} is drawn per "
            "request, so the demo cannot aim a fault at its first target"
        )
    else:
        await _failures(n, pick, first)
    n.srv.reset()
    n.heading("the request carries [[fake: status=400]]: whichever provider gets it answers 400")
    await n.ask(_with(req, "[[fake: status=400]] bad request"))
    through = hedged or pick
    n.heading(f"a stream (model={through.request['model']}): {through.title()}")
    await _stream(n, _with(through.request, "Stream these words to me please"))
    if hedged is None:
        n.skip("hedging: no route leads to a hedged group")
    else:
        await _hedge(n, hedged)
    if g.cache.responses_ttl is None:
        n.skip("the response cache: this config has no cache.responses")
    else:
        cached = _with(req, "Cache me", temperature=0)
        n.heading(
            f"temperature 0 (cache.responses.max_temperature is {g.cache.max_temperature:g}): asked once"
        )
        await n.ask(cached)
        n.heading("...and the same request again")
        await n.ask(cached)


async def _failures(n: Narrator, pick: Pick, first: Target) -> None:
    req, p = pick.request, first.provider
    model = first.model_for(req["model"])
    retry_on = next((s for s in _STATUSES if s in p.retry.retry_status), None)
    if p.speed.retries == 0:
        n.skip(f"a retry: {p.name}'s speed '{p.speed.name}' allows no retries")
    elif retry_on is None:
        n.skip(
            f"a retry: classifier '{p.retry.name}' of {p.name} retries none of the statuses "
            f"{', '.join(map(str, _STATUSES))}"
        )
    else:
        n.program(first, model, [str(retry_on)])
        n.heading(
            f"{first.key} answers {retry_on} once (programmed in the fake; classifier "
            f"'{p.retry.name}' retries {retry_on})"
        )
        await n.ask(_with(req, "Retry me"))
    status = next((s for s in _STATUSES if s in p.retry.failover_status), None)
    if status is None:
        n.skip(f"failover: classifier '{p.retry.name}' fails over on none of {_STATUSES}")
        return
    tries = p.speed.tries
    n.program(first, model, [str(status)] * tries)
    n.heading(
        f"{first.key} answers {status} to {_n(tries, 'try', 'tries')} in a row (speed "
        f"'{p.speed.name}' allows {_n(p.speed.retries, 'retry', 'retries')})"
    )
    _, events = await n.ask(_with(req, "Fail over"))
    brk = p.breaker
    if brk is None:
        n.skip(f"circuit breaking: provider {p.name} has no breaker")
        return
    opened = any(isinstance(e, BreakerChanged) and e.state == "open" for e in events)
    for i in range(max(1, -(-brk.failures // tries)) + 1):
        if opened:
            break
        n.program(first, model, [str(status)] * tries)
        n.heading(
            f"{first.key} keeps answering {status} (breaker '{brk.name}': {brk.failures} "
            f"failures open the circuit) — request {i + 1}"
        )
        _, events = await n.ask(_with(req, "Still failing"))
        opened = any(isinstance(e, BreakerChanged) and e.state == "open" for e in events)
    if not opened:
        n.skip(f"a request with the circuit open: no circuit of {p.name} opened")
        return
    n.srv.reset()
    n.heading(f"another request, the circuit of {p.name} being open")
    await n.ask(_with(req, "Skip the open circuit"))


async def _stream(n: Narrator, request: dict[str, Any]) -> None:
    text: list[str] = []
    try:
        async for event in n.eng.stream(request):
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Done):
                n.tell(event, "".join(text))
    except RouteError as exc:
        n.tell(exc)


async def _hedge(n: Narrator, pick: Pick) -> None:
    group, first = pick.route.to, pick.first
    assert isinstance(group, Group) and first is not None
    after = group.hedge_after or 0.0
    slow = after + 0.6
    n.program(first, first.model_for(pick.request["model"]), [f"latency={slow:g}s"])
    n.heading(
        f"hedged group '{group.name}' (hedge_after {after * 1000:.0f}ms): {first.key} takes "
        f"{slow * 1000:.0f}ms to answer (programmed in the fake)"
    )
    await n.ask(_with(pick.request, "Race"))


async def _main(path: str, profile: str | None) -> int:
    graph = compile_file(path, profile=profile)
    port = fake_port(graph)
    pick, hedged = picks(graph)
    _say(f"== the routing graph of {' + '.join(graph.sources)} (Mermaid)")
    _say(to_mermaid(graph))
    if pick is not None:
        _say(f"== plan (dry run) for model={pick.request['model']}")
        _say(build_plan(graph, {**pick.request, "temperature": 0}).text())
    try:
        server = await FakeServer(port=port).start()
    except OSError as exc:
        _say(f"demo: cannot listen on 127.0.0.1:{port} ({exc}); stop what uses it and retry")
        return 1
    _say(f"== fake provider listening on {server.url} (openai, anthropic, gemini, ollama wire formats)\n")
    try:
        async with Engine.from_graph(graph, seed=7) as eng:
            await _steps(Narrator(eng, server, graph), pick, hedged)
            _say("\n== health")
            for name, h in eng.health().items():
                lat = f"{h.latency * 1000:.1f}ms" if h.latency is not None else "-"
                _say(
                    f"   {name:10} circuit={h.circuit:9} latency={lat:>8} tries={h.tries} "
                    f"failures={h.failures}"
                )
    finally:
        await server.stop()
    return 0


def run(path: str = "routes.yaml", profile: str | None = None) -> int:
    """Run the demo; returns the exit code. Without a profile, ``profiles/ci.yaml`` beside the
    config is used when it exists (the shipped one points every provider at the fake)."""
    if profile is None and (Path(path).resolve().parent / "profiles" / "ci.yaml").is_file():
        profile = "ci"
    try:
        return asyncio.run(_main(path, profile))
    except KeyboardInterrupt:
        return 130
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 2
