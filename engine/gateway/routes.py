"""The endpoint table and the endpoints that do not route: ``/v1/models``, the health checks,
``/metrics`` and ``/admin/reload``. The Anthropic dialect's endpoints come from
``engine.gateway.anthropic`` (its ``endpoints(gateway)``), added when the module is there."""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from engine.errors import ConfigError
from engine.gateway.app import Call, Endpoint, Gateway, Handler
from engine.gateway.errors import Refusal
from engine.gateway.routed import model_name_ok, routed
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
    gw.prefixed[MODEL_PATH] = Endpoint(openai, _get(model))
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

MODEL_PATH = "/v1/models/"  # + an id: GET one model (ids have slashes: ``provider/model``)


def _catalog(call: Call) -> tuple[dict[str, str], list[str]]:
    """Every listable id with its owner, and those the caller's key may request (in order).
    Anthropic's shape (and errors) when the request carries ``anthropic-version``."""
    if "anthropic-version" in call.headers and "/v1/messages" in call.gateway.endpoints:
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
    return names, call.gateway.keyring.visible(key, list(names))


def _anthropic_model(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}


def _openai_model(name: str, owner: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


async def models(call: Call) -> None:
    """What the key may request: the routes' model names, then every ``provider/model``;
    OpenAI's list shape, or Anthropic's page (``limit``, default 20, ``after_id``, ``before_id``)
    when the request carries ``anthropic-version``."""
    names, visible = _catalog(call)
    if call.dialect.name == "anthropic":
        page, more = _page(visible, parse_qs(call.scope.get("query_string", b"").decode("latin-1")))
        body = {
            "data": [_anthropic_model(n) for n in page],
            "has_more": more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }
        await call.reply(200, body)
        return
    created = int(time.time())
    data = [_openai_model(n, names[n], created) for n in visible]
    await call.reply(200, {"object": "list", "data": data})


def _page(ids: list[str], query: dict[str, list[str]]) -> tuple[list[str], bool]:
    """Anthropic's pagination: up to ``limit`` ids after ``after_id`` or just before
    ``before_id``; whether more lie beyond in that direction."""
    raw = query.get("limit", ["20"])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise Refusal(400, f"limit: Input should be an integer from 1 to 1000, got {raw[:20]!r}")
    limit = int(raw)
    before, after = query.get("before_id", [None])[-1], query.get("after_id", [None])[-1]
    for field, ident in (("before_id", before), ("after_id", after)):
        if ident is not None and ident not in ids:
            raise Refusal(400, f"{field}: {ident[:80]!r} is not a model id of this list")
    if before is not None:
        end = ids.index(before)
        return ids[max(0, end - limit) : end], end - limit > 0
    start = ids.index(after) + 1 if after is not None else 0
    return ids[start : start + limit], start + limit < len(ids)


async def model(call: Call) -> None:
    """``GET /v1/models/{id}``: one model the key may request, in the list's shape: a listed
    id, or a name a route matches by a glob (``gpt-*``) that the chat endpoints would take;
    404 for any other."""
    names, visible = _catalog(call)
    name = call.scope["path"][len(MODEL_PATH) :]
    gw = call.gateway
    key = call.key
    if name not in visible and (
        name in names  # (listed, but not for this key)
        or not model_name_ok(name)
        or not gw.keyring.allows(key, name)
        or gw.engine.graph.match(name, (key.metadata if key else None) or {}) is None
    ):
        raise Refusal(404, f"no model {name[:80]!r} for this key", kind="not_found_error")
    if call.dialect.name == "anthropic":
        await call.reply(200, _anthropic_model(name))
    else:
        await call.reply(200, _openai_model(name, names.get(name, "engine"), int(time.time())))
