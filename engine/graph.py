"""The immutable routing graph: resolved, frozen nodes the runtime executes and plans describe.

Built only by the compiler. Every node is a frozen, slotted dataclass and every mapping a read-only
proxy, so assigning to any of them raises. ``RoutingGraph.describe()`` is the canonical text form.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import Problem
from engine.providers.base import DEFAULT_WIRE, WireOptions
from engine.templates import RequestTemplate
from engine.values import MASK, Secret, format_size

if TYPE_CHECKING:
    from engine.result import Usage
from engine.values import format_duration as fd

__all__ = [
    "DEFAULT_MAX_RESPONSE",
    "Backoff",
    "Breaker",
    "CacheConfig",
    "Classifier",
    "ClientKey",
    "Constraints",
    "Group",
    "Limits",
    "Match",
    "Member",
    "Model",
    "Node",
    "Pool",
    "Price",
    "Provider",
    "Route",
    "RoutingGraph",
    "ServerConfig",
    "Speed",
    "Strategy",
    "Target",
    "TelemetryConfig",
    "frozen_map",
]

_MEMO_MAX = 4096  # distinct requested models remembered by RoutingGraph.match
_MEMO_NAME_MAX = 256  # longer model names are matched each time, never remembered

Strategy = str  # a name in engine.strategies.STRATEGIES (the schema admits no other)
DEFAULT_MAX_RESPONSE = 32 * 1024 * 1024  # providers.NAME.max_response: bytes, after decompression


def frozen_map(items: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.0

    def delay(self, retry: int, rand: float = 0.0) -> float:
        """Sleep before retry number ``retry`` (1-based); ``rand`` in [0, 1) scales the jitter."""
        return min(self.base * self.factor ** (retry - 1), self.max) + self.jitter * rand

    def worst(self, retry: int) -> float:
        return self.delay(retry, 1.0)


@dataclass(frozen=True, slots=True)
class Speed:
    name: str
    connect: float
    read: float
    pool: float
    retries: int
    backoff: Backoff

    @property
    def tries(self) -> int:
        return self.retries + 1

    def worst_case(self) -> float:
        """connect + read per try, times tries, plus every backoff sleep between them."""
        per_try = self.connect + self.read
        return per_try * self.tries + sum(self.backoff.worst(r) for r in range(1, self.tries))


@dataclass(frozen=True, slots=True)
class Classifier:
    name: str
    retry_status: frozenset[int]
    retry_errors: frozenset[str]
    failover_status: frozenset[int]
    failover_errors: frozenset[str]
    honor_retry_after: bool = True


@dataclass(frozen=True, slots=True)
class Breaker:
    name: str
    failures: int
    recovery: float
    scope: Literal["provider", "model"] = "provider"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. Cached prompt tokens cost ``cache_read`` (read from the provider's
    prompt cache) and ``cache_write`` (written to it); without those prices, ``input``."""

    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens, reasoning included
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        """USD, rounded to 15 decimal places (1.35e-06, not 1.3499999999999998e-06)."""
        read, write = usage.cache_read_tokens, usage.cache_write_tokens
        uncached = max(usage.input_tokens - read - write, 0)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        total = (
            uncached * self.input
            + read * read_price
            + write * write_price
            + usage.output_tokens * self.output
        )
        return round(total / 1_000_000, 15)

    def describe(self) -> str:
        """``in/out``, then the cache prices that are set."""
        out = f"{self.input:g}/{self.output:g}"
        if self.cache_read is not None:
            out += f" cache_read={self.cache_read:g}"
        if self.cache_write is not None:
            out += f" cache_write={self.cache_write:g}"
        return out


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    context: int | None = None
    price: Price | None = None
    wire: WireOptions | None = None  # the provider's wire options with this model's own over them


@dataclass(frozen=True, slots=True)
class Pool:
    max_connections: int = 100
    max_keepalive: int = 20
    keepalive_expiry: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    kind: str
    base_url: str | Secret
    api_key: Secret | str | None
    speed: Speed
    retry: Classifier
    breaker: Breaker | None
    pool: Pool
    headers: Mapping[str, str | Secret]
    template: RequestTemplate = field(repr=False, compare=False)
    template_path: str
    limits: Limits | None
    models: Mapping[str, Model]
    max_response: int = DEFAULT_MAX_RESPONSE  # largest answer body, decompressed, in bytes
    wire: WireOptions = DEFAULT_WIRE  # written wire options (max_tokens_field, ...)

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, kind={self.kind!r})"

    @property
    def custom_wire(self) -> bool:
        """Whether routes.yaml set wire options here or on one of the models."""
        return self.wire != DEFAULT_WIRE or any(m.wire is not None for m in self.models.values())

    def wire_for(self, model: str) -> WireOptions:
        """The wire options a call of ``model`` uses."""
        info = self.models.get(model)
        return info.wire if info is not None and info.wire is not None else self.wire


@dataclass(frozen=True, slots=True)
class Target:
    """A provider and a model; ``model is None`` passes the request's own model through."""

    provider: Provider
    model: str | None

    @property
    def key(self) -> str:
        return f"{self.provider.name}/{self.model}" if self.model is not None else self.provider.name

    def model_for(self, requested: str) -> str:
        return self.model if self.model is not None else requested

    def price(self, model: str) -> Price | None:
        info = self.provider.models.get(model)
        return info.price if info is not None else None

    def __repr__(self) -> str:
        return f"Target({self.key!r})"


@dataclass(frozen=True, slots=True)
class Member:
    node: Node
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    strategy: Strategy
    members: tuple[Member, ...]
    max_attempts: int
    hedge_after: float | None = None
    on_limit: Literal["failover", "wait"] = "failover"

    def __repr__(self) -> str:
        return f"Group({self.name!r}, {self.strategy})"


Node = Target | Group


@dataclass(frozen=True, slots=True)
class Match:
    """``model`` is a glob on the requested model; ``metadata`` is equality on request metadata."""

    model: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=frozen_map)
    _model_test: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, model: str | None, metadata: Mapping[str, Any]) -> Match:
        test: Callable[[str], bool] | None = None
        if model is not None:
            if any(c in model for c in "*?["):
                test = re.compile(fnmatch.translate(model)).match  # type: ignore[assignment]
            else:
                test = model.__eq__
        return cls(model, frozen_map(metadata), test)

    def accepts_model(self, model: str) -> bool:
        return self._model_test is None or self._model_test(model)

    def matches(self, model: str, metadata: Mapping[str, Any]) -> bool:
        if self._model_test is not None and not self._model_test(model):
            return False
        for key, want in self.metadata.items():
            if key not in metadata or metadata[key] != want:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.model is not None:
            parts.append(f"model={self.model}")
        parts += [f"metadata.{k}={v!r}" for k, v in sorted(self.metadata.items())]
        return " ".join(parts) or "*"


@dataclass(frozen=True, slots=True)
class Constraints:
    """A route's limits a target must meet to be tried (``engine.constraints`` checks them):
    its model's price at most ``max_input``/``max_output`` USD per 1M tokens, its recent p95
    latency at most ``max_latency`` seconds. ``None``: no limit."""

    max_input: float | None = None
    max_output: float | None = None
    max_latency: float | None = None

    @property
    def prices(self) -> bool:
        return self.max_input is not None or self.max_output is not None

    def describe(self) -> str:
        """``max_price=in/out max_latency=1.5s`` (``*`` for a side without a limit)."""
        out = []
        if self.prices:
            side = [f"{v:g}" if v is not None else "*" for v in (self.max_input, self.max_output)]
            out.append("max_price=" + "/".join(side))
        if self.max_latency is not None:
            out.append(f"max_latency={fd(self.max_latency)}")
        return " ".join(out)


@dataclass(frozen=True, slots=True)
class Route:
    index: int
    match: Match
    to: Node
    deadline: float
    worst_case: float
    targets: tuple[Target, ...]  # every target this route can reach, in priority order
    where: str = ""  # "routes.yaml:42" for plans
    constraints: Constraints | None = None  # max_price / max_latency, when written

    def __repr__(self) -> str:
        return f"Route({self.index}, {self.match.describe()} -> {_node_name(self.to)})"


@dataclass(frozen=True, slots=True)
class CacheConfig:
    backend: str | Secret = "memory"  # a Secret when it read the environment (a URL may hold a password)
    models_ttl: float = 3600.0
    responses_ttl: float | None = None  # None: responses are not cached
    max_temperature: float = 0.0
    namespace: str = "engine"  # the prefix of every shared key

    @property
    def url(self) -> str:
        """The backend as written, secrets revealed (only the state layer opens it)."""
        return self.backend.reveal() if isinstance(self.backend, Secret) else self.backend

    @property
    def shown(self) -> str:
        """The backend for display: environment values and inline passwords masked."""
        b = self.backend
        return _mask_url(b.masked() if isinstance(b, Secret) else b)

    def __repr__(self) -> str:
        return (
            f"CacheConfig(backend={self.shown!r}, models_ttl={self.models_ttl}, "
            f"responses_ttl={self.responses_ttl}, max_temperature={self.max_temperature}, "
            f"namespace={self.namespace!r})"
        )


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The ``telemetry:`` section: what the engine records (engine.telemetry reads it)."""

    metrics: bool = True
    traces: bool = False
    capture_content: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    provider_names: Mapping[str, str] = field(default_factory=frozen_map)  # explicit gen_ai names

    def describe(self) -> str:
        """One line: every switch, then the explicit provider names."""
        on = {True: "on", False: "off"}
        out = (
            f"telemetry metrics={on[self.metrics]} traces={on[self.traces]} "
            f"capture_content={on[self.capture_content]} "
            f"logs={self.log_format}/{self.log_level}"
        )
        names = ",".join(f"{k}:{v}" for k, v in sorted(self.provider_names.items()))
        return out + (f" provider_names={names}" if names else "")


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One client key of the gateway (``server.keys``): ``key`` is the secret clients send."""

    name: str
    key: Secret | str = field(repr=False)
    models: tuple[str, ...] | None = None  # globs on the requested model; None: every route
    limits: Limits | None = None
    metadata: Mapping[str, Any] = field(default_factory=frozen_map)
    admin: bool = False


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The ``server:`` section: how ``engine serve`` listens, whom it lets in, how it stops."""

    listen: str = "127.0.0.1:4000"
    workers: int = 1
    auth: Literal["keys", "none"] = "keys"
    keys: Mapping[str, ClientKey] = field(default_factory=frozen_map)
    keepalive: float = 15.0
    drain: float = 30.0
    max_body: int = 4_000_000


def _node_name(node: Node) -> str:
    return node.name if isinstance(node, Group) else node.key


class _Memo:
    """A bounded memo of requested model -> candidate routes (cleared when full; at most
    ``_MEMO_MAX`` names of at most ``_MEMO_NAME_MAX`` characters)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, tuple[Route, ...]] = {}

    def get(self, model: str) -> tuple[Route, ...] | None:
        return self._items.get(model)

    def put(self, model: str, routes: tuple[Route, ...]) -> None:
        if len(model) > _MEMO_NAME_MAX:
            return
        if len(self._items) >= _MEMO_MAX:
            self._items.clear()
        self._items[model] = routes


@dataclass(frozen=True, slots=True)
class RoutingGraph:
    version: int
    providers: Mapping[str, Provider]
    groups: Mapping[str, Group]
    routes: tuple[Route, ...]
    speeds: Mapping[str, Speed]
    classifiers: Mapping[str, Classifier]
    breakers: Mapping[str, Breaker]
    cache: CacheConfig
    deadline: float
    problems: tuple[Problem, ...] = ()  # warnings kept from compilation
    sources: tuple[str, ...] = ()
    profile: str | None = None
    telemetry: TelemetryConfig = field(default_factory=lambda: TelemetryConfig())
    server: ServerConfig = field(default_factory=lambda: ServerConfig())

    _by_model: _Memo = field(default_factory=lambda: _Memo(), init=False, repr=False, compare=False)

    def match(self, model: str, metadata: Mapping[str, Any]) -> Route | None:
        """The first route whose match accepts the request, or ``None``.

        The routes whose model pattern accepts ``model`` are found once per model and kept (a
        bounded memo, invisible from outside), so a request only checks those routes' metadata.
        """
        candidates = self._by_model.get(model)
        if candidates is None:
            candidates = self._candidates(model)
        for route in candidates:
            if not route.match.metadata or route.match.matches(model, metadata):
                return route
        return None

    def _candidates(self, model: str) -> tuple[Route, ...]:
        found = tuple(r for r in self.routes if r.match.accepts_model(model))
        self._by_model.put(model, found)
        return found

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    def __repr__(self) -> str:
        return (
            f"RoutingGraph({len(self.providers)} providers, {len(self.groups)} groups, "
            f"{len(self.routes)} routes)"
        )

    def describe(self) -> str:
        """Canonical, deterministic text: stable across runs, secrets masked. For snapshots."""
        out: list[str] = [f"version {self.version}"]
        if self.profile:
            out.append(f"profile {self.profile}")
        out.append(f"deadline {fd(self.deadline)}")
        out.append(_describe_cache(self.cache))
        if self.telemetry != TelemetryConfig():  # the default is not shown: snapshots stay
            out.append(self.telemetry.describe())
        out += _describe_policies(self)
        out.append("providers")
        for p in sorted(self.providers.values(), key=lambda p: p.name):
            out += _describe_provider(p)
        out.append("groups")
        for g in sorted(self.groups.values(), key=lambda g: g.name):
            hedge = f" hedge_after={fd(g.hedge_after)}" if g.hedge_after is not None else ""
            hedge += " on_limit=wait" if g.on_limit == "wait" else ""
            out.append(f"  {g.name}: strategy={g.strategy} max_attempts={g.max_attempts}{hedge}")
            for member in g.members:
                out.append(f"    - {_node_name(member.node)} weight={member.weight:g}")
        out.append("routes")
        for r in self.routes:
            out.append(
                f"  [{r.index}] {r.match.describe()} -> {_node_name(r.to)} "
                f"deadline={fd(r.deadline)} worst_case={fd(r.worst_case)}"
                + (f" {r.constraints.describe()}" if r.constraints is not None else "")
            )
            out.append("      targets: " + ", ".join(t.key for t in r.targets))
        if self.problems:
            out.append("warnings")
            out += [f"  {p.format(show_source=False)}" for p in self.problems]
        return "\n".join(out) + "\n"


def _describe_cache(c: CacheConfig) -> str:
    """The cache line of ``RoutingGraph.describe``."""
    return (
        f"cache backend={c.shown}"
        + (f" namespace={c.namespace}" if c.namespace != "engine" else "")
        + f" models_ttl={fd(c.models_ttl)} responses="
        + (
            f"ttl={fd(c.responses_ttl)} max_temperature={c.max_temperature:g}"
            if c.responses_ttl is not None
            else "off"
        )
    )


def _describe_policies(graph: RoutingGraph) -> list[str]:
    """The speeds, classifiers and breakers sections of ``RoutingGraph.describe``."""
    out = ["speeds"]
    for s in sorted(graph.speeds.values(), key=lambda s: s.name):
        b = s.backoff
        out.append(
            f"  {s.name}: connect={fd(s.connect)} read={fd(s.read)} pool={fd(s.pool)} "
            f"retries={s.retries} backoff=base:{fd(b.base)},factor:{b.factor:g},"
            f"max:{fd(b.max)},jitter:{fd(b.jitter)} worst_case={fd(s.worst_case())}"
        )
    out.append("classifiers")
    for k in sorted(graph.classifiers.values(), key=lambda k: k.name):
        out.append(
            f"  {k.name}: retry_on={_codes(k.retry_status, k.retry_errors)} "
            f"failover_on={_codes(k.failover_status, k.failover_errors)} "
            f"retry_after={'honor' if k.honor_retry_after else 'ignore'}"
        )
    out.append("breakers")
    for br in sorted(graph.breakers.values(), key=lambda b: b.name):
        out.append(f"  {br.name}: failures={br.failures} recovery={fd(br.recovery)} scope={br.scope}")
    return out


def _describe_provider(p: Provider) -> list[str]:
    """One provider's lines of ``RoutingGraph.describe``: itself, its limits, headers and models."""
    out = [
        f"  {p.name}: kind={p.kind} base_url={_secret(p.base_url)} api_key={_secret(p.api_key)} "
        f"speed={p.speed.name} retry={p.retry.name} "
        f"breaker={p.breaker.name if p.breaker else 'none'} "
        f"pool={p.pool.max_connections}/{p.pool.max_keepalive} template={p.template_path}"
        + (f" max_response={format_size(p.max_response)}" if p.max_response != DEFAULT_MAX_RESPONSE else "")
    ]
    if p.limits is not None:
        out.append(f"    limits rpm={p.limits.rpm} tpm={p.limits.tpm}")
    for name in sorted(p.headers):
        out.append(f"    header {name}: {_secret(p.headers[name])}")
    for m in sorted(p.models.values(), key=lambda m: m.name):
        price = f" price={m.price.describe()}" if m.price else ""
        ctx = f" context={m.context}" if m.context else ""
        out.append(f"    model {m.name}{ctx}{price}")
    return out


def _codes(status: frozenset[int], errors: frozenset[str]) -> str:
    items = [str(s) for s in sorted(status)] + sorted(errors)
    return "[" + ",".join(items) + "]"


def _secret(value: Secret | str | None) -> str:
    if value is None:
        return "none"
    return MASK if isinstance(value, Secret) else value


def _mask_url(url: str) -> str:
    """Hide a password in ``redis://user:pass@host`` forms."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1" + MASK + "@", url)
