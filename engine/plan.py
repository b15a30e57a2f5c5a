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
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from engine.constraints import latency_breach, price_breach
from engine.context_window import needed_tokens, overflow
from engine.errors import NoRouteError
from engine.estimate import estimate
from engine.graph import CacheConfig, Classifier, Group, Model, Node, Route, RoutingGraph, Speed, Target
from engine.request import Request, normalize_request
from engine.strategies import STRATEGIES
from engine.values import MASK, Secret
from engine.values import format_duration as fd

__all__ = [
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
    "build_plan",
    "cache_decision",
]


JSONValue = Any  # what json.loads returns


def _plain(value: Any) -> Any:
    """A plan part as JSON-ready builtins: fresh dicts and lists, parts through ``to_dict``."""
    if isinstance(value, _Part):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class _Part:
    """A frozen part of a plan; ``to_dict`` is its JSON form (its fields in order)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class PlanRequest(_Part):
    """The request planned: its model, the names of its metadata keys, whether it streams."""

    model: str
    metadata: tuple[str, ...]
    stream: bool


@dataclass(frozen=True, slots=True)
class PlanRoute(_Part):
    """The matched route: its index, match and place in routes.yaml, why it matched, its target."""

    index: int
    match: str
    where: str
    why: str
    to: str


@dataclass(frozen=True, slots=True)
class PlanTreeTarget(_Part):
    """A target in the order tree; ``extra`` is what the parent group's strategy shows of it
    (``Strategy.plan_member``: a weight and share, a price)."""

    target: str
    model: str
    circuit: Literal["open", "closed"]
    extra: Mapping[str, JSONValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "model": self.model, "circuit": self.circuit, **_plain(self.extra)}


@dataclass(frozen=True, slots=True)
class PlanTreeGroup(_Part):
    """A group in the order tree: its strategy, its ordering policy (the strategy's ``policy``),
    its members in the order written; ``extra`` as for ``PlanTreeTarget``."""

    group: str
    strategy: str
    order: str
    max_attempts: int
    members: tuple[PlanTreeNode, ...]
    hedge_after: str | None = None
    extra: Mapping[str, JSONValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group,
            "strategy": self.strategy,
            "order": self.order,
            "max_attempts": self.max_attempts,
            "members": _plain(self.members),
        }
        if self.hedge_after is not None:
            out["hedge_after"] = self.hedge_after
        return {**out, **_plain(self.extra)}


PlanTreeNode = PlanTreeTarget | PlanTreeGroup


@dataclass(frozen=True, slots=True)
class PlanSpeed(_Part):
    """A target's speed category, durations as written (``1.5s``)."""

    name: str
    connect: str
    read: str
    pool: str
    retries: int
    backoff: str
    worst_case: str


@dataclass(frozen=True, slots=True)
class PlanRetry(_Part):
    """A target's retry classifier: statuses, then error kinds, it retries and fails over on."""

    classifier: str
    retry_on: tuple[int | str, ...]
    failover_on: tuple[int | str, ...]
    retry_after: Literal["honor", "ignore"]


@dataclass(frozen=True, slots=True)
class PlanBreaker(_Part):
    """A target's circuit breaker and the state of its circuit now."""

    name: str
    failures: int
    recovery: str
    scope: str
    state: Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class PlanPrice(_Part):
    """USD per 1M tokens."""

    input: float
    output: float


@dataclass(frozen=True, slots=True)
class PlanEstimate(_Part):
    """What the request would cost at one target: its estimated input tokens (text characters /
    4, the rate limiter's estimate), its ``max_tokens`` (``DEFAULT_MAX_TOKENS``, 256, when it sets
    none) and the USD at the target's price (``None``: the model has no price)."""

    input_tokens: int
    output_tokens: int
    cost: float | None


@dataclass(frozen=True, slots=True)
class PlanTarget(_Part):
    """One target the route can reach, with its settings and ``notes``: what its kind drops or
    changes in this request."""

    target: str
    provider: str
    kind: str
    model: str
    base_url: str
    speed: PlanSpeed
    retry: PlanRetry
    breaker: PlanBreaker | None
    price: PlanPrice | None
    notes: tuple[str, ...]
    estimate: PlanEstimate
    context: int | None = None  # the model's declared context window, tokens
    ruled_out: str | None = None  # why this request would skip it (context, a route limit)


@dataclass(frozen=True, slots=True)
class PlanCache(_Part):
    """Whether the answer may be cached, and why (or why not)."""

    cacheable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PlanBody(_Part):
    """The HTTP request a target would receive (secrets masked)."""

    url: str
    headers: Mapping[str, str]
    json: JSONValue


@dataclass(frozen=True, slots=True)
class Plan(_Part):
    """The dry run. ``to_dict()`` is JSON-ready (``engine plan --json``); ``text()`` is the
    human form. ``body`` is the first target's request, or the template's failure as text,
    or None when every circuit is open."""

    request: PlanRequest
    route: PlanRoute
    deadline: str
    worst_case: str
    worst_case_exceeds_deadline: bool
    needed_tokens: int  # the window the request needs: estimated input tokens + max_tokens
    limits: str | None  # the route's max_price / max_latency, when written
    tree: PlanTreeNode
    targets: tuple[PlanTarget, ...]
    cache: PlanCache
    first_target: str | None
    body: PlanBody | str | None

    def text(self) -> str:
        return _text(self)

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
    refresh = " (metadata refresh: the cached answer is replaced)" if meta.get("cache") == "refresh" else ""
    return True, (
        f"temperature {temp:g} <= max_temperature {cache.max_temperature:g}; "
        f"cached for {fd(cache.responses_ttl)}{refresh}"
    )


def build_plan(
    graph: RoutingGraph,
    request: Request | Mapping[str, Any],
    *,
    open_circuits: Collection[str] = frozenset(),
    target: str | None = None,
    latencies: Mapping[str, float] | None = None,
) -> Plan:
    """Plan ``request`` on ``graph``; ``open_circuits`` holds circuit keys that are open now
    (``provider`` or ``provider/model``). The body shown is the first target's (with a closed
    circuit), or ``target``'s: any target the route can reach, as the plan names it
    (``provider/model`` or ``provider``). ``latencies``: each target's recent p95 (seconds),
    for the route's ``max_latency``. Targets the request would skip (a context window too
    small, a route limit) say why in ``ruled_out``. Raises ``RequestError`` for a malformed request,
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
    targets = tuple(_target(t, req, model, open_circuits, route, latencies) for t in order)
    if target is None:
        first = next(
            (
                t
                for t, p in zip(order, targets, strict=True)
                if p.ruled_out is None and _circuit(t, model) not in open_circuits
            ),
            None,
        )
    else:
        first = next((t for t in order if target in (t.key, f"{t.provider.name}/{model}")), None)
        if first is None:
            raise ValueError(
                f"route {route.index} cannot reach target {target!r}; it reaches: "
                + ", ".join(t.key for t in order)
            )
    return Plan(
        request=PlanRequest(model, tuple(sorted(meta)), bool(req.get("stream"))),
        route=PlanRoute(
            route.index, route.match.describe(), route.where, _why(route, model, meta), _name(route.to)
        ),
        deadline=fd(route.deadline),
        worst_case=fd(route.worst_case),
        worst_case_exceeds_deadline=route.worst_case > route.deadline,
        needed_tokens=needed_tokens(req),
        limits=route.constraints.describe() if route.constraints is not None else None,
        tree=_tree(route.to, model, open_circuits),
        targets=targets,
        cache=PlanCache(cacheable, why),
        first_target=first.key if first else None,
        body=_body(first, req, model) if first else None,
    )


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
        parts.append(
            f"model {model!r} equals {m.model!r}"
            if m.model == model
            else f"model {model!r} matches glob {m.model!r}"
        )
    parts += [f"metadata.{k} == {v!r}" for k, v in sorted(m.metadata.items())]
    first = f"first match (route {route.index})"
    return first + ": " + ("; ".join(parts) if parts else "catch-all")


def _tree(
    node: Node, model: str, open_circuits: Collection[str], extra: Mapping[str, Any] | None = None
) -> PlanTreeNode:
    if isinstance(node, Target):
        return PlanTreeTarget(
            node.key,
            node.model_for(model),
            "open" if _circuit(node, model) in open_circuits else "closed",
            extra or {},
        )
    strategy = STRATEGIES[node.strategy]
    return PlanTreeGroup(
        node.name,
        node.strategy,
        strategy.policy,
        node.max_attempts,
        tuple(
            _tree(m.node, model, open_circuits, strategy.plan_member(node, m, model)) for m in node.members
        ),
        fd(node.hedge_after) if node.hedge_after is not None else None,
        extra or {},
    )


def _notes(t: Target, req: dict[str, Any], name: str) -> tuple[str, ...]:
    """What the target's kind drops or changes in this request (a custom template may send
    more than the kind's variables: the notes are about the built-in mapping)."""
    from engine.providers import get_kind

    return tuple(get_kind(t.provider.kind).notes(req, name, t.provider.wire_for(name)))


def _ruled_out(
    route: Route, info: Model | None, label: str, req: dict[str, Any], latencies: Mapping[str, float] | None
) -> str | None:
    """Why the runtime would skip this target for ``req`` (as ``Runtime.refusal`` decides)."""
    if info is not None and (why := overflow(needed_tokens(req), info.context)) is not None:
        return "context: " + why
    limits = route.constraints
    if limits is None:
        return None
    why = price_breach(limits, info.price if info else None) or latency_breach(
        limits, (latencies or {}).get(label)
    )
    return "constraint: " + why if why else None


def _target(
    t: Target,
    req: dict[str, Any],
    model: str,
    open_circuits: Collection[str],
    route: Route,
    latencies: Mapping[str, float] | None,
) -> PlanTarget:
    p = t.provider
    name = t.model_for(model)
    price = t.price(name)
    info = p.models.get(name)
    return PlanTarget(
        t.key,
        p.name,
        p.kind,
        name,
        _mask(p.base_url),
        _speed(p.speed),
        _retry(p.retry),
        (
            PlanBreaker(
                p.breaker.name,
                p.breaker.failures,
                fd(p.breaker.recovery),
                p.breaker.scope,
                "open" if _circuit(t, model) in open_circuits else "closed",
            )
            if p.breaker
            else None
        ),
        PlanPrice(price.input, price.output) if price else None,
        _notes(t, req, name),
        PlanEstimate(*estimate(req, price)),
        info.context if info is not None else None,
        _ruled_out(route, info, f"{p.name}/{name}", req, latencies),
    )


def _speed(s: Speed) -> PlanSpeed:
    backoff = (
        f"{fd(s.backoff.base)} x{s.backoff.factor:g} max {fd(s.backoff.max)} jitter {fd(s.backoff.jitter)}"
    )
    return PlanSpeed(s.name, fd(s.connect), fd(s.read), fd(s.pool), s.retries, backoff, fd(s.worst_case()))


def _retry(k: Classifier) -> PlanRetry:
    return PlanRetry(
        k.name,
        (*sorted(k.retry_status), *sorted(k.retry_errors)),
        (*sorted(k.failover_status), *sorted(k.failover_errors)),
        "honor" if k.honor_retry_after else "ignore",
    )


def _body(t: Target, req: dict[str, Any], model: str) -> PlanBody | str:
    from engine.providers import get_kind

    kind = get_kind(t.provider.kind)
    name = t.model_for(model)
    stream = bool(req.get("stream"))
    try:
        text = t.provider.template.render(**kind.context(req, name, stream, t.provider.wire_for(name)))
    except Exception as exc:  # a template that cannot render this request: the try fails over
        return (
            f"(the template {t.provider.template_path} cannot render this request: "
            f"{type(exc).__name__}: {exc}; this target would fail over)"
        )
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text
    return PlanBody(
        _mask_url(kind.url(_reveal_for_url(t.provider.base_url), name, stream), t.provider.base_url),
        _headers(kind.auth_headers(_PROBE if t.provider.api_key else None), t.provider.headers),
        body,
    )


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


def _text(plan: Plan) -> str:
    return (
        "\n".join(
            [
                *_head(plan),
                "",
                "order",
                *_tree_text(plan.tree, "  "),
                "",
                "targets",
                *(line for t in plan.targets for line in _target_text(t)),
                *_body_text(plan),
            ]
        )
        + "\n"
    )


def _head(plan: Plan) -> list[str]:
    q, r = plan.request, plan.route
    return [
        f"request  model={q.model}"
        + (f" metadata={','.join(q.metadata)}" if q.metadata else "")
        + (" stream" if q.stream else ""),
        f"route    #{r.index} [{r.match}] -> {r.to}   ({r.where})",
        f"why      {r.why}",
        f"deadline {plan.deadline}   worst case {plan.worst_case}"
        + ("   WARNING: worst case exceeds the deadline" if plan.worst_case_exceeds_deadline else ""),
        f"cache    {'cacheable' if plan.cache.cacheable else 'not cached'}: {plan.cache.reason}",
        *([f"limits   {plan.limits} (targets over them are skipped)"] if plan.limits else []),
        *(
            [f"context  the request needs ~{plan.needed_tokens} tokens (input estimate + max_tokens)"]
            if any(t.context is not None for t in plan.targets)
            else []
        ),
    ]


def _target_text(t: PlanTarget) -> list[str]:
    s, k, b = t.speed, t.retry, t.breaker
    lines = [
        f"  {t.target}  ({t.kind} model={t.model} {t.base_url})",
        f"      speed {s.name}: connect {s.connect} read {s.read} pool {s.pool}, {s.retries} "
        f"retries, backoff {s.backoff}, worst {s.worst_case}",
        f"      retry {k.classifier}: retry_on {_codes(k.retry_on)} failover_on "
        f"{_codes(k.failover_on)} retry_after {k.retry_after}",
        "      breaker "
        + (
            f"{b.name}: {b.failures} failures, recovery {b.recovery}, scope {b.scope}, {b.state}"
            if b
            else "none"
        ),
    ]
    if t.price:
        lines.append(f"      price ${t.price.input:g} in / ${t.price.output:g} out per 1M tokens")
    e = t.estimate
    cost = f"${e.cost:.6g}" if e.cost is not None else "no price"
    lines.append(f"      estimate {e.input_tokens} in + {e.output_tokens} out tokens: {cost}")
    if t.context is not None:
        lines.append(f"      context {t.context} tokens")
    if t.ruled_out is not None:
        lines.append(f"      RULED OUT {t.ruled_out}")
    return lines + [f"      note {n}" for n in t.notes]


def _body_text(plan: Plan) -> list[str]:
    body = plan.body
    lines = ["", f"request body for {plan.first_target or '(no target: all circuits open)'}"]
    if isinstance(body, PlanBody):
        lines.append(f"  POST {body.url}")
        lines += [f"  {h}: {v}" for h, v in body.headers.items()]
        lines += ["  " + x for x in json.dumps(body.json, indent=2, ensure_ascii=False).splitlines()]
    elif body is not None:
        lines.append("  " + body)
    return lines


def _tree_text(node: PlanTreeNode, pad: str) -> list[str]:
    if isinstance(node, PlanTreeTarget):
        circuit = "  [circuit open: skipped]" if node.circuit == "open" else ""
        return [f"{pad}- {node.target}{_member_text(node.extra)}{circuit}"]
    head = f"{pad}{node.group}: {node.strategy}, max {node.max_attempts} targets"
    if node.hedge_after is not None:
        head += f", hedge after {node.hedge_after}"
    extra = _member_text(node.extra)
    if extra:
        head += " " + extra
    out = [head, f"{pad}  order: {node.order}"]
    for m in node.members:
        out += _tree_text(m, pad + "  ")
    return out


def _member_text(extra: Mapping[str, Any]) -> str:
    """What a group's strategy adds to a member's line: its weight, or its price."""
    if "weight" in extra:
        return f" weight {extra['weight']:g} ({extra['share']:.0%})"
    if "price" in extra:
        p = extra["price"]
        return f" ${p['input']:g} in / ${p['output']:g} out per 1M" if p else " no price: tried last"
    return ""


def _codes(items: tuple[int | str, ...]) -> str:
    return "[" + ",".join(str(i) for i in items) + "]"
