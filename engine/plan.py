"""A routing graph and a request in, a dry-run ``Plan`` out: what the engine would do, no network.

The plan names the matched route and why, the ordered targets with strategy, timeouts, retries,
classifier, breaker, price and notes (what each target's kind drops or changes in this request),
the cache decision, the worst-case time and the body the first target
(or any other it names) would receive. Nothing secret is shown. For random strategies it shows the
policy and the weights.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import NoRouteError
from engine.graph import CacheConfig, Group, Node, Route, RoutingGraph, Target
from engine.request import Request, normalize_request
from engine.strategies import STRATEGIES
from engine.values import MASK, Secret
from engine.values import format_duration as fd

__all__ = ["Plan", "build_plan", "cache_decision"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The dry run. ``data`` is JSON-ready; ``text()`` is the human form."""

    data: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(self.data))
        return data

    def text(self) -> str:
        return _text(self.data)

    def __str__(self) -> str:
        return self.text()


def cache_decision(cache: CacheConfig, request: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the response to ``request`` may be cached, and why (or why not)."""
    if cache.responses_ttl is None:
        return False, "response caching is off (no cache.responses in the config)"
    meta = request.get("metadata") or {}
    if meta.get("cache") is False:
        return False, "the request's metadata says cache: false"
    if request.get("stream"):
        return False, "streaming requests are not cached"
    temp = request.get("temperature")
    if temp is None:
        return False, "the request sets no temperature"
    if temp > cache.max_temperature:
        return False, f"temperature {temp:g} is above max_temperature {cache.max_temperature:g}"
    refresh = " (metadata refresh: the cached answer is replaced)" if meta.get("cache") == \
        "refresh" else ""
    return True, (f"temperature {temp:g} <= max_temperature {cache.max_temperature:g}; "
                  f"cached for {fd(cache.responses_ttl)}{refresh}")


def build_plan(graph: RoutingGraph, request: Request | Mapping[str, Any], *,
               open_circuits: Collection[str] = frozenset(), target: str | None = None) -> Plan:
    """Plan ``request`` on ``graph``; ``open_circuits`` holds circuit keys that are open now
    (``provider`` or ``provider/model``). The body shown is the first target's (with a closed
    circuit), or ``target``'s: any target the route can reach, as the plan names it
    (``provider/model`` or ``provider``). Raises ``RequestError`` for a malformed request,
    ``NoRouteError`` when nothing matches and ``ValueError`` for a target the route cannot
    reach."""
    req = normalize_request(request)
    model = req["model"]
    meta = req.get("metadata") or {}
    route = graph.match(model, meta)
    if route is None:
        raise NoRouteError(f"no route matches model {model!r}")
    cacheable, why = cache_decision(graph.cache, req)
    order = [t for t in route.targets]
    if target is None:
        first = next((t for t in order if _circuit(t, model) not in open_circuits), None)
    else:
        first = next((t for t in order if target in (t.key, f"{t.provider.name}/{model}")),
                     None)
        if first is None:
            raise ValueError(f"route {route.index} cannot reach target {target!r}; it reaches: "
                             + ", ".join(t.key for t in order))
    data: dict[str, Any] = {
        "request": {"model": model, "metadata": sorted(meta), "stream": bool(req.get("stream"))},
        "route": {"index": route.index, "match": route.match.describe(), "where": route.where,
                  "why": _why(route, model, meta), "to": _name(route.to)},
        "deadline": fd(route.deadline),
        "worst_case": fd(route.worst_case),
        "worst_case_exceeds_deadline": route.worst_case > route.deadline,
        "tree": _tree(route.to, model, open_circuits),
        "targets": [_target(t, req, model, open_circuits) for t in order],
        "cache": {"cacheable": cacheable, "reason": why},
        "first_target": first.key if first else None,
        "body": _body(first, req, model) if first else None,
    }
    return Plan(data)


def _circuit(t: Target, model: str) -> str:
    br = t.provider.breaker
    if br is not None and br.scope == "model":
        return f"{t.provider.name}/{t.model_for(model)}"
    return t.provider.name


def _name(node: Node) -> str:
    return node.name if isinstance(node, Group) else node.key


def _why(route: Route, model: str, meta: Mapping[str, Any]) -> str:
    m = route.match
    parts = []
    if m.model is not None:
        parts.append(f"model {model!r} equals {m.model!r}" if m.model == model
                     else f"model {model!r} matches glob {m.model!r}")
    parts += [f"metadata.{k} == {v!r}" for k, v in sorted(m.metadata.items())]
    first = f"first match (route {route.index})"
    return first + ": " + ("; ".join(parts) if parts else "catch-all")


def _tree(node: Node, model: str, open_circuits: Collection[str]) -> dict[str, Any]:
    if isinstance(node, Target):
        return {"target": node.key, "model": node.model_for(model),
                "circuit": "open" if _circuit(node, model) in open_circuits else "closed"}
    strategy = STRATEGIES[node.strategy]
    out: dict[str, Any] = {
        "group": node.name, "strategy": node.strategy, "order": strategy.policy,
        "max_attempts": node.max_attempts,
        "members": [{**_tree(m.node, model, open_circuits),
                     **strategy.plan_member(node, m, model)}
                    for m in node.members],
    }
    if node.hedge_after is not None:
        out["hedge_after"] = fd(node.hedge_after)
    return out


def _notes(t: Target, req: dict[str, Any], name: str) -> list[str]:
    """What the target's kind drops or changes in this request (a custom template may send
    more than the kind's variables: the notes are about the built-in mapping)."""
    from engine.providers import get_kind

    return get_kind(t.provider.kind).notes(req, name, t.provider.wire_for(name))


def _target(t: Target, req: dict[str, Any], model: str,
            open_circuits: Collection[str]) -> dict[str, Any]:
    p = t.provider
    s = p.speed
    k = p.retry
    name = t.model_for(model)
    price = t.price(name)
    return {
        "target": t.key, "provider": p.name, "kind": p.kind, "model": name,
        "base_url": _mask(p.base_url),
        "speed": {"name": s.name, "connect": fd(s.connect), "read": fd(s.read),
                  "pool": fd(s.pool), "retries": s.retries,
                  "backoff": f"{fd(s.backoff.base)} x{s.backoff.factor:g} max {fd(s.backoff.max)}"
                             f" jitter {fd(s.backoff.jitter)}",
                  "worst_case": fd(s.worst_case())},
        "retry": {"classifier": k.name,
                  "retry_on": sorted(k.retry_status) + sorted(k.retry_errors),
                  "failover_on": sorted(k.failover_status) + sorted(k.failover_errors),
                  "retry_after": "honor" if k.honor_retry_after else "ignore"},
        "breaker": ({"name": p.breaker.name, "failures": p.breaker.failures,
                     "recovery": fd(p.breaker.recovery), "scope": p.breaker.scope,
                     "state": "open" if _circuit(t, model) in open_circuits else "closed"}
                    if p.breaker else None),
        "price": {"input": price.input, "output": price.output} if price else None,
        "notes": _notes(t, req, name),
    }


def _body(t: Target, req: dict[str, Any], model: str) -> Any:
    from engine.providers import get_kind

    kind = get_kind(t.provider.kind)
    name = t.model_for(model)
    stream = bool(req.get("stream"))
    try:
        text = t.provider.template.render(
            **kind.context(req, name, stream, t.provider.wire_for(name)))
    except Exception as exc:  # a template that cannot render this request: the try fails over
        return f"(the template {t.provider.template_path} cannot render this request: " \
               f"{type(exc).__name__}: {exc}; this target would fail over)"
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text
    return {"url": _mask_url(kind.url(_reveal_for_url(t.provider.base_url), name, stream),
                             t.provider.base_url),
            "headers": _headers(kind.auth_headers(_PROBE if t.provider.api_key else None),
                                t.provider.headers),
            "json": body}


_PROBE = "\x00key\x00"


def _headers(auth: Mapping[str, str], extra: Mapping[str, str | Secret]) -> dict[str, str]:
    """Headers as sent, with every value that holds the key or a secret masked."""
    out = {h: (MASK if _PROBE in v else v) for h, v in auth.items()}
    out.update({h: _mask(v) for h, v in extra.items()})
    return dict(sorted(out.items()))


def _reveal_for_url(url: str | Secret) -> str:
    return "{base_url}" if isinstance(url, Secret) else url


def _mask_url(url: str, base: str | Secret) -> str:
    return url.replace("{base_url}", MASK) if isinstance(base, Secret) else url


def _mask(value: str | Secret) -> str:
    return MASK if isinstance(value, Secret) else value


def _text(d: Mapping[str, Any]) -> str:
    r = d["route"]
    lines = [
        f"request  model={d['request']['model']}"
        + (f" metadata={','.join(d['request']['metadata'])}" if d['request']['metadata'] else "")
        + (" stream" if d["request"]["stream"] else ""),
        f"route    #{r['index']} [{r['match']}] -> {r['to']}   ({r['where']})",
        f"why      {r['why']}",
        f"deadline {d['deadline']}   worst case {d['worst_case']}"
        + ("   WARNING: worst case exceeds the deadline" if d["worst_case_exceeds_deadline"]
           else ""),
        f"cache    {'cacheable' if d['cache']['cacheable'] else 'not cached'}: "
        f"{d['cache']['reason']}",
        "",
        "order",
    ]
    lines += _tree_text(d["tree"], "  ")
    lines += ["", "targets"]
    for t in d["targets"]:
        s, k, b = t["speed"], t["retry"], t["breaker"]
        lines.append(f"  {t['target']}  ({t['kind']} model={t['model']} {t['base_url']})")
        lines.append(f"      speed {s['name']}: connect {s['connect']} read {s['read']} pool "
                     f"{s['pool']}, {s['retries']} retries, backoff {s['backoff']}, worst "
                     f"{s['worst_case']}")
        lines.append(f"      retry {k['classifier']}: retry_on {_codes(k['retry_on'])} "
                     f"failover_on {_codes(k['failover_on'])} retry_after {k['retry_after']}")
        lines.append("      breaker " + (f"{b['name']}: {b['failures']} failures, recovery "
                                         f"{b['recovery']}, scope {b['scope']}, {b['state']}"
                                         if b else "none"))
        if t["price"]:
            lines.append(f"      price ${t['price']['input']:g} in / ${t['price']['output']:g} "
                         "out per 1M tokens")
        lines += [f"      note {n}" for n in t["notes"]]
    body = d["body"]
    lines += ["", f"request body for {d['first_target'] or '(no target: all circuits open)'}"]
    if isinstance(body, dict):
        lines.append(f"  POST {body['url']}")
        lines += [f"  {h}: {v}" for h, v in body["headers"].items()]
        lines += ["  " + x for x in json.dumps(body["json"], indent=2, ensure_ascii=False)
                  .splitlines()]
    elif body is not None:
        lines.append("  " + str(body))
    return "\n".join(lines) + "\n"


def _tree_text(node: Mapping[str, Any], pad: str) -> list[str]:
    if "target" in node:
        circuit = "  [circuit open: skipped]" if node["circuit"] == "open" else ""
        return [f"{pad}- {node['target']}{_member_text(node)}{circuit}"]
    head = f"{pad}{node['group']}: {node['strategy']}, max {node['max_attempts']} targets"
    if "hedge_after" in node:
        head += f", hedge after {node['hedge_after']}"
    extra = _member_text(node)
    if extra:
        head += " " + extra
    out = [head, f"{pad}  order: {node['order']}"]
    for m in node["members"]:
        out += _tree_text(m, pad + "  ")
    return out


def _member_text(node: Mapping[str, Any]) -> str:
    """What a group's strategy adds to a member's line: its weight, or its price."""
    if "weight" in node:
        return f" weight {node['weight']:g} ({node['share']:.0%})"
    if "price" in node:
        p = node["price"]
        return f" ${p['input']:g} in / ${p['output']:g} out per 1M" if p else " no price: tried last"
    return ""


def _codes(items: list[Any]) -> str:
    return "[" + ",".join(str(i) for i in items) + "]"
