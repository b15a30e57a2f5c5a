"""The endpoint table and the endpoints that do not route: ``/v1/models``, the health checks,
``/metrics`` and ``/admin/reload``. The Anthropic dialect's endpoints come from
``engine.gateway.anthropic`` (its ``endpoints(gateway)``), added when the module is there."""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any

from engine.errors import ConfigError
from engine.gateway.app import Call, Endpoint, Gateway, Handler
from engine.gateway.routed import routed
from engine.runtime.health import ProviderHealth

__all__ = ["install"]

_log = logging.getLogger("engine.gateway")
TEXT = b"text/plain; version=0.0.4; charset=utf-8"


def install(gw: Gateway) -> None:
    """Fill ``gw.endpoints``: path -> (dialect, handler per method)."""
    openai = gw.openai
    gw.endpoints.update(
        {
            "/v1/chat/completions": Endpoint(openai, {"POST": routed}),
            "/v1/models": Endpoint(openai, _get(models)),
            "/health": Endpoint(openai, _get(health)),
            "/health/ready": Endpoint(openai, _get(ready)),
            "/health/providers": Endpoint(openai, _get(providers)),
            "/metrics": Endpoint(openai, _get(metrics)),
            "/admin/reload": Endpoint(openai, {"POST": reload}),
        }
    )
    if importlib.util.find_spec("engine.gateway.anthropic") is not None:
        anthropic = importlib.import_module("engine.gateway.anthropic")
        gw.endpoints.update(anthropic.endpoints(gw))


def _get(handler: Handler) -> dict[str, Handler]:
    """``GET`` and ``HEAD`` (the status and headers of the GET, no body: uvicorn drops it), as
    load balancers probe health checks either way."""
    return {"GET": handler, "HEAD": handler}


# -- health --------------------------------------------------------------------------------------


async def health(call: Call) -> None:
    """Liveness: 200 while the process runs (no key needed)."""
    await call.reply(200, {"status": "ok"})


async def ready(call: Call) -> None:
    """Readiness: 503 while draining (no key needed)."""
    if call.gateway.draining:
        await call.reply(503, {"status": "draining"})
    else:
        await call.reply(200, {"status": "ready", "routes": len(call.gateway.engine.graph.routes)})


async def providers(call: Call) -> None:
    """Per provider: circuit, score, latency p50/p95, counts (admin key)."""
    call.authenticate(admin=True)
    out = {name: _health(h) for name, h in call.gateway.engine.health().items()}
    await call.reply(200, {"providers": out})


def _health(h: ProviderHealth) -> dict[str, Any]:
    return {
        "circuit": h.circuit,
        "circuits": dict(h.circuits),
        "score": h.score,
        "latency_p50": h.p50,
        "latency_p95": h.p95,
        "latency_avg": h.latency,
        "tries": h.tries,
        "ok": h.ok,
        "failures": h.failures,
        "skipped": h.skipped,
        "targets": {
            k: {"score": t.score, "latency_p50": t.p50, "latency_p95": t.p95, "ok": t.ok, "failed": t.failed}
            for k, t in h.targets.items()
        },
    }


# -- metrics and reload ---------------------------------------------------------------------------


async def metrics(call: Call) -> None:
    """The Prometheus text format; with several workers, summed over them (the key is any
    valid one, none on an open gateway)."""
    call.authenticate()
    body = call.gateway.engine.exposition()
    await call.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"x-request-id", call.rid.encode("latin-1")),
                (b"content-type", TEXT),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await call.send({"type": "http.response.body", "body": body})


async def reload(call: Call) -> None:
    """Compile the file again and swap (admin key); 422 with the located problems, the old
    graph kept, when it does not compile."""
    call.authenticate(admin=True)
    try:
        graph = await call.gateway.reload()
    except ConfigError as exc:
        problems = [p.format(show_source=False) for p in exc.problems]
        _log.error("engine: reload refused, the old graph keeps serving:\n%s", "\n".join(problems))
        await call.reply(422, {**call.dialect.error(422, str(exc).splitlines()[0]), "problems": problems})
        return
    if call.gateway.on_reload is not None:
        call.gateway.on_reload()
    await call.reply(200, {"status": "reloaded", "routes": len(graph.routes), "sources": list(graph.sources)})


# -- models ----------------------------------------------------------------------------------------


async def models(call: Call) -> None:
    """What the key may request: the routes' model names, then every ``provider/model``;
    OpenAI's list shape, Anthropic's when the request carries ``anthropic-version`` (its errors
    too)."""
    anthropic = "anthropic-version" in call.headers
    if anthropic and "/v1/messages" in call.gateway.endpoints:
        call.dialect = call.gateway.endpoints["/v1/messages"].dialect
    key = call.authenticate()
    graph = call.gateway.engine.graph
    names: dict[str, str] = {}  # id -> owner
    for route in graph.routes:
        m = route.match.model
        if m is not None and not any(c in m for c in "*?["):
            names.setdefault(m, "engine")
    for p in graph.providers.values():
        for model in p.models:
            names.setdefault(f"{p.name}/{model}", p.name)
    visible = call.gateway.keyring.visible(key, list(names))
    if anthropic:
        listed = [
            {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}
            for n in visible
        ]
        first = visible[0] if visible else None
        last = visible[-1] if visible else None
        await call.reply(200, {"data": listed, "has_more": False, "first_id": first, "last_id": last})
        return
    created = int(time.time())
    data: list[dict[str, Any]] = [
        {"id": n, "object": "model", "created": created, "owned_by": names[n]} for n in visible
    ]
    await call.reply(200, {"object": "list", "data": data})
