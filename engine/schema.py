"""Plain loaded data in, validated ``*Spec`` models out: the shape and types of routes.yaml.

Only this module (and ``request.py``) uses pydantic. Models are strict (unknown keys are errors) and
frozen; field descriptions become the JSON Schema's hover docs (``engine schema``). Names are not
resolved here: that is the compiler's job.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from engine.providers import KINDS
from engine.strategies import STRATEGIES
from engine.values import Secret, TargetRef, parse_duration, parse_size

__all__ = [
    "BackoffSpec",
    "BreakerSpec",
    "CacheSpec",
    "ClassifierSpec",
    "ClientKeySpec",
    "DefaultsSpec",
    "GroupSpec",
    "MaxPriceSpec",
    "MemberSpec",
    "ModelSpec",
    "ProviderSpec",
    "RouteSpec",
    "RoutesSpec",
    "SchemaError",
    "ServerSpec",
    "Spec",
    "SpeedSpec",
    "TelemetrySpec",
    "allowed_keys",
    "json_schema",
    "validate",
]

if typing.TYPE_CHECKING:
    KindName = str
    StrategyName = str
else:  # the registries' names, in their order: the JSON Schema's enums
    KindName = Literal[tuple(KINDS)]
    StrategyName = Literal[tuple(STRATEGIES)]

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 250ms, 5s, 1.5s, 10m, 1h, or a bare number of seconds.",
        }
    ),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"},
                {"type": "integer", "minimum": 1},
            ],
            "description": "A size: 512KB, 16MiB, 1GB (KB/MB/GB are powers of 1000, KiB/MiB/GiB of "
            "1024), or a bare number of bytes.",
        }
    ),
]


def _secret_text(value: Any) -> Any:
    if isinstance(value, Secret | str):
        return value
    raise ValueError("expected a string")


SecretText = Annotated[
    Any,
    BeforeValidator(_secret_text),
    WithJsonSchema(
        {
            "type": "string",
            "description": "Text; ${NAME} / ${NAME:-default} read the "
            "environment and make the value a secret (masked everywhere).",
        }
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


class Spec(BaseModel):
    """Base: strict (unknown keys are errors) and frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, validate_default=False
    )


class BackoffSpec(Spec):
    """Exponential backoff between retries on the same target."""

    base: Duration | None = Field(None, description="First sleep before a retry (e.g. 1s).")
    factor: float | None = Field(None, ge=1, le=10, description="Multiplier per retry (default 2).")
    max: Duration | None = Field(None, description="Cap on one sleep (default 30s).")
    jitter: Duration | None = Field(None, description="Random extra sleep, 0..jitter (default 0).")


class SpeedSpec(Spec):
    """A speed category: timeouts, retries and backoff for the providers that use it."""

    extends: Name | None = Field(
        None,
        description="Speed whose values fill the ones omitted here "
        "(default: the built-in of the same name, else 'medium').",
    )
    connect: Duration | None = Field(None, description="TCP/TLS connect timeout.")
    read: Duration | None = Field(None, description="Read timeout: longest wait for response bytes.")
    pool: Duration | None = Field(None, description="Longest wait for a free pooled connection.")
    retries: int | None = Field(
        None, ge=0, le=20, description="Retries on the same target after the first try."
    )
    backoff: BackoffSpec | None = Field(None, description="Sleep between retries.")


class CodesSpec(Spec):
    """HTTP statuses and transport error kinds."""

    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, description="HTTP status codes, e.g. [429, 500, 502, 503, 504]."
    )
    errors: list[Literal["timeout", "connect", "reset", "protocol", "context"]] = Field(
        default_factory=list,
        description="Transport errors: timeout, connect (refused/DNS), "
        "reset (connection dropped), protocol (malformed or truncated response); and context: "
        "the provider said the request exceeds the model's context window (a 4xx such as "
        "OpenAI's context_length_exceeded or Anthropic's 'prompt is too long'), never retried "
        "unless retry_on names it.",
    )


class ClassifierSpec(Spec):
    """A retry classifier: which failures retry on the same target and which fail over."""

    retry_on: CodesSpec | None = Field(None, description="Retried on the same target (default: transient's).")
    failover_on: CodesSpec | None = Field(
        None, description="Move on to the next target (default: transient's). Other 4xx raise ProviderError."
    )
    retry_after: Literal["honor", "ignore"] | None = Field(
        None, description="Honour Retry-After / retry-after-ms (never beyond the deadline)."
    )


class BreakerSpec(Spec):
    """A circuit breaker: after `failures` consecutive failures the circuit opens for `recovery`."""

    failures: int = Field(5, ge=1, le=10_000, description="Consecutive failures that open it.")
    recovery: Duration = Field(60.0, description="How long it stays open before a half-open probe.")
    scope: Literal["provider", "model"] = Field(
        "provider", description="One circuit per provider, or per provider/model."
    )


def _positive_ttl(value: float) -> float:
    if value <= 0:
        raise ValueError("ttl must be more than 0; write a duration such as 10m, or leave this cache out")
    return value


class ModelsCacheSpec(Spec):
    """Caching of each provider's model listing."""

    ttl: Duration = Field(3600.0, description="How long a provider's model listing is cached.")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float) -> float:
        return _positive_ttl(value)


class ResponsesCacheSpec(Spec):
    """Caching of responses to deterministic requests (low temperature)."""

    ttl: Duration = Field(600.0, description="How long a cached response is served.")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float) -> float:
        return _positive_ttl(value)

    max_temperature: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Only requests at or below this temperature are cached (a request without one is not).",
    )


class CacheSpec(Spec):
    """Response and model-listing caches, and where shared state lives."""

    backend: SecretText = Field("memory", description="memory | redis://host:port/db")
    models: ModelsCacheSpec = Field(
        default_factory=ModelsCacheSpec, description="Model listings per provider (default ttl 1h)."
    )
    responses: ResponsesCacheSpec | None = Field(None, description="Response caching; off unless written.")
    namespace: str = Field(
        "engine",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every shared key (cache, single-flight, "
        "circuits, rate limits, listings): deployments that share one Redis "
        "but must not share state each take their own. Keys also hold a "
        "digest of each endpoint (URL and credentials), so unrelated configs "
        "never share answers even in one namespace.",
    )

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: Any) -> Any:
        text = value.reveal() if isinstance(value, Secret) else value
        if text != "memory" and not re.match(r"^(redis|rediss|unix)://", text):
            raise ValueError("backend must be 'memory' or a redis:// URL")
        return value


class DefaultsSpec(Spec):
    """Applied to every provider unless it says otherwise."""

    speed: Name = Field("medium", description="Speed category name.")
    retry: Name = Field("transient", description="Retry classifier name.")
    breaker: Name = Field("standard", description="Breaker name, or 'none'.")
    deadline: Duration = Field(60.0, description="Whole-request budget across all attempts.")


class PriceSpec(Spec):
    """Price of a model, for Response.cost."""

    input: float = Field(ge=0, description="USD per 1M input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens (reasoning included).")
    cache_read: float | None = Field(
        None,
        ge=0,
        description="USD per 1M input tokens read from the provider's prompt cache "
        "(default: the input price).",
    )
    cache_write: float | None = Field(
        None,
        ge=0,
        description="USD per 1M input tokens written to the provider's prompt cache "
        "(default: the input price).",
    )


class ModelSpec(Spec):
    """A model a provider serves."""

    context: int | None = Field(
        None,
        ge=1,
        description="Context window in tokens. A request whose estimated input tokens plus "
        "max_tokens exceed it skips this model at no network cost (attempt kind context).",
    )
    price: PriceSpec | None = Field(None, description="USD per 1M tokens, for Response.cost.")
    max_tokens_field: MaxTokensField | None = Field(
        None, description="kind openai: as the provider's max_tokens_field, for this model."
    )
    send_reasoning_content: bool | None = Field(
        None, description="kind openai: as the provider's send_reasoning_content, for this model."
    )


class PoolSpec(Spec):
    """HTTP connection pool of one provider."""

    max_connections: int = Field(100, ge=1, le=100_000, description="Most open connections.")
    max_keepalive: int = Field(20, ge=0, le=100_000, description="Most idle connections kept open for reuse.")
    keepalive_expiry: Duration = Field(30.0, description="Idle keep-alive connections close after.")


class LimitsSpec(Spec):
    """Client-side rate limits for one provider."""

    rpm: int | None = Field(None, ge=1, description="Requests per minute, client side.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute, client side.")


def _models(value: Any) -> Any:
    if isinstance(value, list):  # shorthand: models: [a, b]
        return {str(v): {} for v in value}
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


class ProviderSpec(Spec):
    """An upstream API."""

    kind: KindName = Field(
        description="Wire protocol: " + "; ".join(f"{k.name}: {k.description}" for k in KINDS.values()) + "."
    )
    base_url: SecretText | None = Field(
        None,
        description="API root (default: "
        + ", ".join(f"{k.name} {k.default_base_url}" for k in KINDS.values())
        + ").",
    )
    api_key: SecretText | None = Field(None, description="Usually ${SOME_API_KEY}.")
    speed: Name | None = Field(None, description="Speed category (default: defaults.speed).")
    retry: Name | None = Field(None, description="Retry classifier (default: defaults.retry).")
    breaker: Name | None = Field(None, description="Breaker, or 'none' (default: defaults.breaker).")
    pool: PoolSpec = Field(default_factory=PoolSpec, description="Connection pool limits.")
    headers: dict[str, SecretText] = Field(default_factory=dict, description="Extra headers.")
    template: str | None = Field(
        None, description="Override the kind's request template (path relative to routes.yaml)."
    )
    limits: LimitsSpec | None = Field(None, description="Client-side rate limits.")
    max_response: Size | None = Field(
        None,
        description="Largest answer body accepted, after "
        "decompression, whole or streamed (default 32MiB); a "
        "larger one is a protocol error, which fails over.",
    )
    models: Annotated[
        dict[str, ModelSpec],
        BeforeValidator(_models, json_schema_input_type=list[str] | dict[str, ModelSpec | None]),
    ] = Field(default_factory=dict, description="Models this provider serves, with context and price.")
    max_tokens_field: MaxTokensField | None = Field(
        None,
        description="kind openai: the field a request's token limit is sent as "
        "(max_tokens or max_completion_tokens). Unset: max_completion_tokens for the o-series "
        "and gpt-5 reasoning models, which refuse max_tokens; the request's own field otherwise.",
    )
    send_reasoning_content: bool = Field(
        False,
        description="kind openai: send assistant messages' reasoning_content back "
        "(vLLM, DeepSeek thinking with tools); off, it is dropped, as some models refuse it.",
    )


def _member(value: Any) -> Any:
    return {"target": value} if isinstance(value, str) else value


class MemberSpec(Spec):
    """A group member: a target and its weight."""

    target: Name = Field(description="provider/model, a provider, or a group.")
    weight: float = Field(1.0, gt=0, le=1_000_000, description="Relative weight (weighted).")


class GroupSpec(Spec):
    """A failover group."""

    strategy: StrategyName = Field(
        "priority",
        description="How targets are ordered for each request. "
        + "; ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values())
        + ".",
    )
    targets: list[
        Annotated[MemberSpec, BeforeValidator(_member, json_schema_input_type=str | MemberSpec)]
    ] = Field(min_length=1, description="provider/model, provider, or group names; or {target, weight}.")
    max_attempts: int | None = Field(None, ge=1, description="Distinct targets tried at most (default: all).")
    hedge_after: Duration | None = Field(
        None, description="hedged only: start the next target if the current one has not answered by then."
    )
    on_limit: Literal["failover", "wait"] = Field(
        "failover",
        description="When a target's client-side rate limit (providers.*.limits) is "
        "used up: move on to the next target at once, or wait for room within the deadline. The "
        "last target of a route always waits.",
    )


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Secret):
        raise ValueError("a metadata value cannot come from the environment (${...}): write it out")
    raise ValueError("a metadata value must be a string, a number, true/false or null")


Scalar = Annotated[str | int | float | bool | None, BeforeValidator(_scalar)]


class MatchSpec(Spec):
    """Which requests a route takes; every condition written must hold."""

    model: str | None = Field(None, description="Glob on the requested model (gpt-*).")
    metadata: dict[str, Scalar] = Field(default_factory=dict, description="Equality on request metadata.")


class MaxPriceSpec(Spec):
    """The most a target's model may cost to be tried (USD per 1M tokens); either or both."""

    input: float | None = Field(None, ge=0, description="USD per 1M input tokens, at most.")
    output: float | None = Field(None, ge=0, description="USD per 1M output tokens, at most.")


class RouteSpec(Spec):
    """First match wins."""

    match: MatchSpec = Field(default_factory=MatchSpec, description="{} matches everything.")
    to: Name = Field(description="A group, provider/model, or provider.")
    deadline: Duration | None = Field(None, description="This route's budget (default: defaults.deadline).")
    max_price: MaxPriceSpec | None = Field(
        None,
        description="Only targets whose model's price is at most this are tried (checked after "
        "the strategy orders them; an unpriced model is skipped). A route whose every target "
        "is over it is a compile error.",
    )
    max_latency: Duration | None = Field(
        None,
        description="Only targets whose recent p95 latency (engine.health()) is at most this are "
        "tried; a target not yet measured is tried, and one over it gets a probe every 10s.",
    )

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        ref = TargetRef.parse(value)
        if not ref.head or ref.model == "":
            raise ValueError(f"'{value}' is not a target: write provider/model, provider or group")
        return value


class LogsSpec(Spec):
    """The access log: one line per routed request on the logger ``engine.access``."""

    format: Literal["text", "json"] = Field(
        "text", description="text (key=value pairs) or json (one object per line)."
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="The level each line is logged at; nothing is written unless the "
        "engine.access logger is enabled for it.",
    )


class TelemetrySpec(Spec):
    """What the engine records about each request: metrics, traces and the access log."""

    metrics: bool = Field(True, description="Prometheus metrics (engine.metrics(), the gateway's /metrics).")
    traces: bool = Field(
        False,
        description="OpenTelemetry spans on the GenAI semantic conventions (needs the engine[otel] extra).",
    )
    capture_content: bool = Field(
        False, description="Put prompts and answers on spans (gen_ai.input.messages, gen_ai.output.messages)."
    )
    logs: LogsSpec = Field(default_factory=LogsSpec, description="The access log line.")
    provider_names: dict[Name, Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=dict,
        description="gen_ai.provider.name per provider, over the one read "
        "from its kind and base_url (e.g. {local: vllm}).",
    )


def _listen(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected host:port, e.g. 127.0.0.1:4000")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:4000 or 0.0.0.0:4000)")
    return value


Listen = Annotated[
    str,
    BeforeValidator(_listen),
    WithJsonSchema({"type": "string", "description": "host:port, e.g. 127.0.0.1:4000."}),
]


class ClientKeySpec(Spec):
    """One client key of the gateway: who may call it, which models, how often."""

    key: SecretText = Field(description="The key clients send (Bearer or x-api-key): write ${NAME}.")
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Requested models (globs) this key may use; default: every route."
    )
    limits: LimitsSpec | None = Field(None, description="This key's own rpm/tpm (429 past them).")
    metadata: dict[str, Scalar] = Field(
        default_factory=dict, description="Merged into each request's metadata (routes can match the caller)."
    )
    admin: bool = Field(False, description="May call /admin/* and /health/providers.")


class ServerSpec(Spec):
    """`engine serve`: the gateway in front of the routes (command-line options override it)."""

    listen: Listen = Field("127.0.0.1:4000", description="host:port to listen on.")
    workers: int = Field(1, ge=1, le=256, description="Processes; more than one shares state through Redis.")
    auth: Literal["keys", "none"] = Field(
        "keys",
        description="keys: clients need one of `keys` (a loopback listen without keys is open); "
        "none: no auth, on any listen.",
    )
    keys: dict[Name, ClientKeySpec] = Field(default_factory=dict, description="Client keys by name.")
    keepalive: Duration = Field(
        15.0, description="SSE comment sent while a stream waits for its first event."
    )
    drain: Duration = Field(30.0, description="On SIGTERM, how long requests in flight may finish.")
    max_body: Size = Field(4_000_000, description="Larger request bodies are refused with 413.")


class RoutesSpec(Spec):
    """routes.yaml: providers, how fast they are, what is retried, failover groups and routes."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
        json_schema_extra={"title": "engine routes.yaml"},
    )
    version: Literal[1] = Field(description="Language version; always 1.")
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    speeds: dict[Name, SpeedSpec] = Field(
        default_factory=dict, description="Speed categories (built-in: fast, medium, slow)."
    )
    retry: dict[Name, ClassifierSpec] = Field(
        default_factory=dict, description="Retry classifiers (built-in: transient, never)."
    )
    breakers: dict[Name, BreakerSpec] = Field(
        default_factory=dict, description="Circuit breakers (built-in: standard)."
    )
    cache: CacheSpec = Field(default_factory=CacheSpec)
    providers: dict[Name, ProviderSpec] = Field(description="Upstream APIs by name.")
    groups: dict[Name, GroupSpec] = Field(default_factory=dict, description="Failover groups.")
    routes: list[RouteSpec] = Field(min_length=1, description="Request routing; first match wins.")
    telemetry: TelemetrySpec = Field(
        default_factory=TelemetrySpec, description="Metrics, traces and the access log."
    )
    server: ServerSpec = Field(default_factory=ServerSpec, description="The gateway (`engine serve`).")


SECTIONS: dict[str, type[Spec]] = {
    "speeds": SpeedSpec,
    "retry": ClassifierSpec,
    "breakers": BreakerSpec,
    "providers": ProviderSpec,
    "groups": GroupSpec,
}


def json_schema() -> dict[str, Any]:
    schema = RoutesSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One validation failure, free of pydantic types: where (``loc``), what (``type``), text."""

    loc: tuple[str | int, ...]
    type: str
    msg: str
    input: Any
    expected: str = ""


def validate(model: type[Spec], data: Any) -> tuple[Any, list[SchemaError]]:
    """``(spec, [])`` when ``data`` fits ``model``, else ``(None, errors)`` — never raises."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [
            SchemaError(
                tuple(p for p in e["loc"] if isinstance(p, str | int)),
                e["type"],
                str(e["msg"]),
                e.get("input"),
                str((e.get("ctx") or {}).get("expected", "")),
            )
            for e in exc.errors()
        ]


def allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> set[str]:
    """The keys allowed in the mapping at ``loc`` inside ``model`` (for did-you-mean)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(str(part))
            if f is None:
                return set()
            tp = f.annotation
        else:
            args = typing.get_args(tp)
            if not args:
                return set()
            tp = args[-1]
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return set(tp.model_fields)
    return set()


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
            if not models:
                return tp
            tp = models[0]
        else:
            return tp
