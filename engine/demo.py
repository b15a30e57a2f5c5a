"""A config file in, a narrated run on stdout: the bundled fake provider is started and real
requests are routed through the config — a plain answer, a retry, a failover, a circuit opening,
a stream and a hedged race — with every attempt shown. No API keys needed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from engine.api import Engine
from engine.compiler import compile_file
from engine.errors import RouteError
from engine.fake import FakeServer
from engine.graph import RoutingGraph
from engine.mermaid import to_mermaid
from engine.plan import build_plan
from engine.result import Done, Response, TextDelta

__all__ = ["run"]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _attempts(resp: Response | RouteError) -> None:
    for a in resp.attempts:
        _say(f"      attempt  {a}")


def _port(graph: RoutingGraph) -> int:
    """The loopback port the config's providers point at (the ci profile uses 8400)."""
    for p in graph.providers.values():
        url = str(p.base_url)
        if url.startswith("http://127.0.0.1:"):
            return int(url.split(":")[2].split("/")[0])
    raise SystemExit("demo: the config does not point at a loopback fake provider; "
                     "use --profile ci")


async def _main(path: str, profile: str | None) -> int:
    graph = compile_file(path, profile=profile)
    port = _port(graph)
    _say(f"== the routing graph of {' + '.join(graph.sources)} (Mermaid)")
    _say(to_mermaid(graph))
    _say("== plan (dry run) for model=chat")
    _say(build_plan(graph, {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                            "temperature": 0}).text())
    try:
        server = await FakeServer(port=port).start()
    except OSError as exc:
        _say(f"demo: cannot listen on 127.0.0.1:{port} ({exc}); stop what uses it and retry")
        return 1
    _say(f"== fake provider listening on {server.url} (openai, anthropic, gemini, ollama wire "
         "formats)\n")
    try:
        async with Engine.from_graph(graph, seed=7) as eng:
            eng.on("retry", lambda e: _say(f"    event: retry {e.target} in {e.delay * 1000:.0f}ms "
                                           f"after {e.attempt.status or e.attempt.error}"))
            eng.on("failover", lambda e: _say(f"    event: failover from {e.target}"))
            eng.on("breaker", lambda e: _say(f"    event: circuit {e.circuit} is {e.state}"))
            await _scenarios(eng, server)
    finally:
        await server.stop()
    return 0


def _req(text: str, model: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def _show(eng: Engine, title: str, request: dict[str, Any]) -> None:
    _say(f"-- {title}")
    try:
        resp = await eng.route(request)
    except RouteError as exc:
        _say(f"   {type(exc).__name__}: {str(exc).splitlines()[0]}")
        _attempts(exc)
        return
    cost = f"${resp.cost:.8f}" if resp.cost is not None else "n/a"
    _say(f"   {resp.provider}/{resp.model}: {resp.text!r}  ({resp.latency * 1000:.1f}ms, "
         f"{resp.usage.input_tokens}+{resp.usage.output_tokens} tokens, cost {cost})")
    _attempts(resp)


async def _scenarios(eng: Engine, srv: FakeServer) -> None:
    await _show(eng, "1. a plain request to the chat group (priority: openai first)",
                _req("Hello there"))
    srv.program("openai", ["503"], model="gpt-4o-mini")
    await _show(eng, "2. openai answers 503 once: retried on the same target (transient "
                "classifier, backoff)", _req("Retry me"))
    srv.program("openai", ["503"] * 3, model="gpt-4o-mini")
    await _show(eng, "3. openai answers 503 three times: retries exhausted, fails over to "
                "anthropic; 3 failures open openai's circuit (ci profile)", _req("Fail over"))
    await _show(eng, "4. with the circuit open, openai is skipped at no network cost",
                _req("Skip the open circuit"))
    srv.reset()
    await _show(eng, "5. a 400 from the provider is neither retried nor failed over: "
                "ProviderError at once", _req("[[fake: status=400]] bad request"))
    _say("-- 6. streaming through the hedged 'fast' group")
    text = []
    async for event in eng.stream(_req("Stream these words to me please", model="fast")):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Done):
            ttft = f"{event.ttft * 1000:.1f}ms" if event.ttft is not None else "n/a"
            _say(f"   {event.provider}/{event.model}: {''.join(text)!r} (ttft {ttft}, "
                 f"{event.usage.output_tokens} tokens, finish {event.finish_reason})")
            for a in event.attempts:
                _say(f"      attempt  {a}")
    srv.program("openai", ["latency=1s"], model="llama-3.1-8b-instant")
    await _show(eng, "7. hedged: groq is slow (1s), together starts after 400ms and wins",
                _req("Race", model="fast"))
    cached = _req("Cache me", temperature=0)
    await _show(eng, "8. temperature 0 is cacheable (cache.responses.max_temperature 0.1): asked",
                cached)
    await _show(eng, "9. ...and asked again: answered from the response cache, no network",
                cached)
    _say("\n== health")
    for name, h in eng.health().items():
        lat = f"{h.latency * 1000:.1f}ms" if h.latency is not None else "-"
        _say(f"   {name:10} circuit={h.circuit:9} latency={lat:>8} tries={h.tries} "
             f"failures={h.failures}")


def run(path: str = "routes.yaml", profile: str | None = "ci") -> int:
    """Run the demo; returns the exit code."""
    try:
        return asyncio.run(_main(path, profile or "ci"))
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
