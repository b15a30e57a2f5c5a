"""Loaded, validated config in, an immutable ``RoutingGraph`` out — or a ``ConfigError`` listing
every located problem found in one pass.

Resolves names (speeds, classifiers, breakers, providers, models, groups, templates) with
did-you-mean hints, rejects group cycles, fills defaults, test-renders every template, and computes
each route's reachable targets and worst-case time.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import schema as S
from engine.builtins import (
    BUILTIN_BREAKERS,
    BUILTIN_CLASSIFIERS,
    BUILTIN_SPEEDS,
    DEFAULT_BASE_URLS,
    NO_BREAKER,
    TRANSIENT,
)
from engine.constraints import excluded_all
from engine.errors import ConfigError, Problem, sort_problems
from engine.graph import (
    DEFAULT_MAX_RESPONSE,
    Backoff,
    Breaker,
    CacheConfig,
    Classifier,
    ClientKey,
    Constraints,
    Group,
    Limits,
    Match,
    Member,
    Model,
    Node,
    Pool,
    Price,
    Provider,
    Route,
    RoutingGraph,
    ServerConfig,
    Speed,
    Target,
    TelemetryConfig,
    frozen_map,
)
from engine.loader import Loaded, Loc, Path_, format_path, load
from engine.providers import KINDS, get_kind
from engine.providers.base import DEFAULT_WIRE, WireOptions
from engine.reach import Shadows, flatten, groups_in, worst_case
from engine.strategies import STRATEGIES
from engine.template_check import TemplateCheck
from engine.templates import RequestTemplate
from engine.values import Secret, TargetRef
from engine.values import format_duration as fd

__all__ = ["compile_file", "compile_loaded", "compile_text", "did_you_mean"]

_WIRE_KEYS = ("max_tokens_field", "send_reasoning_content")  # provider and model: WireOptions

_SECTION_OF = {"speed": "speeds", "retry classifier": "retry", "breaker": "breakers"}

# keys written in the wrong place: what to write instead
_SPEED_KEY = (
    "'{0}' is set per speed category: speeds: {{NAME: {{{0}: ...}}}}, then speed: NAME here (or in defaults)"
)
_ELSEWHERE: dict[tuple[type[S.Spec], str], str] = {
    **{(S.ProviderSpec, k): _SPEED_KEY.format(k) for k in ("retries", "connect", "read", "backoff")},
    (S.ProviderSpec, "timeout"): "timeouts are set per speed category: speeds: {NAME: {connect: "
    "5s, read: 30s}}, then speed: NAME here (or in defaults)",
    (S.ProviderSpec, "deadline"): "a deadline is per route (routes[].deadline) or in defaults",
    (S.ProviderSpec, "strategy"): "a strategy belongs to a group: groups: {NAME: {strategy: ..., "
    "targets: [...]}}",
    (S.ProviderSpec, "model"): "write the models it serves under models: [a, b]",
    (S.RouteSpec, "targets"): "a route goes to one target (to:); name several in a group",
    (S.GroupSpec, "to"): "a group lists its members under targets: [...]",
}

# vendors people write as a kind -> (the kind whose protocol they speak, their base_url)
_COMPATIBLE = {vendor: (k.name, url) for k in KINDS.values() for vendor, url in k.compatible.items()}


def compile_text(
    text: str,
    *,
    file: str = "routes.yaml",
    base_dir: Path | None = None,
    profile: str | None = None,
    profiles_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RoutingGraph:
    """Compile YAML text. ``base_dir`` resolves template paths and ``profiles/`` (default: cwd)."""
    base = base_dir or Path.cwd()
    loaded = load(text, file, profile=profile, profiles_dir=profiles_dir or base / "profiles", env=env)
    return compile_loaded(loaded, base_dir=base, profile=profile)


def compile_file(
    path: str | Path,
    *,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RoutingGraph:
    """Compile a routes.yaml file (profiles from ``profiles/`` beside it)."""
    p = Path(path)
    name = _display(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(name, 0, 0, "", "file not found", "pass the path of your routes.yaml")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, 0, 0, "", f"cannot read file: {exc}", "")]) from None
    return compile_text(
        text, file=name, base_dir=p.parent, profile=profile, profiles_dir=p.parent / "profiles", env=env
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def compile_loaded(loaded: Loaded, *, base_dir: Path, profile: str | None = None) -> RoutingGraph:
    c = _Compiler(loaded, base_dir)
    graph = c.run(profile)
    errors = [p for p in c.problems if p.severity == "error"]
    if errors or graph is None:
        raise ConfigError(c.problems)
    return graph


def did_you_mean(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


@dataclass
class _Compiler:
    loaded: Loaded
    base_dir: Path
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.template_check = TemplateCheck(self.base_dir)
        self.problems = list(self.loaded.problems)
        self._loader_paths = {p.path for p in self.loaded.problems if p.path}
        self._dropped: list[str] = []  # paths whose secret value was refused (and removed)

    # -- reporting -----------------------------------------------------------------------------

    def report(
        self,
        path: Path_,
        message: str,
        hint: str = "",
        *,
        key: bool = False,
        severity: typing.Literal["error", "warning"] = "error",
        shown: Path_ | None = None,
    ) -> None:
        """Record a problem located at ``path`` (its key with ``key=True``); the message names
        ``shown`` (default: ``path``). A document-level problem points at line 1."""
        text = format_path(path)
        if any(text == d or text.startswith((d + ".", d + "[")) for d in self._dropped):
            return  # a consequence of a refused secret, already reported
        loc = self.loaded.locations.find(path, key=key) or Loc(self.loaded.files[0], 1, 1)
        self.problems.append(
            Problem(
                loc.file,
                loc.line,
                loc.col,
                format_path(path if shown is None else shown),
                message,
                hint,
                severity,
                loc.source,
            )
        )

    def validate(self, model: type[S.Spec], data: Any, path: Path_) -> Any:
        spec, errors = S.validate(model, data)
        for err in errors:
            self._schema_problem(model, path, err)
        return spec

    def _schema_problem(self, model: type[S.Spec], path: Path_, err: S.SchemaError) -> None:
        """Report one schema error at its place, in the words of the language."""
        loc = err.loc
        full = (*path, *loc)
        if format_path(full) in self._loader_paths:
            return  # the loader already said what is wrong here (a tag, an unsupported value)
        if err.type == "extra_forbidden":
            self._unknown_key(model, full, err)
        elif (
            err.type == "literal_error"
            and model is S.ProviderSpec
            and loc == ("kind",)
            and str(err.input).lower() in _COMPATIBLE
        ):
            self._compatible_vendor(full, str(err.input))
        elif model is S.RouteSpec and loc == ("to",) and isinstance(err.input, list):
            self.report(
                full,
                "expected one target, got a list",
                "to try several targets in turn, name them in a group: groups: {NAME: "
                "{targets: [...]}}, and write to: NAME",
            )
        else:
            self._value_problem(full, err)

    def _unknown_key(self, model: type[S.Spec], full: Path_, err: S.SchemaError) -> None:
        """Report a key the model does not allow, with where it belongs or what is allowed."""
        allowed = S.allowed_keys(model, err.loc[:-1])
        name = str(err.loc[-1])
        hint = (
            _ELSEWHERE.get((model, name))
            or did_you_mean(name, allowed)
            or (f"allowed keys: {', '.join(sorted(allowed))}" if allowed else "remove it")
        )
        self.report(full, f"unknown key '{name}'", hint, key=True, shown=full[:-1])

    def _compatible_vendor(self, full: Path_, vendor: str) -> None:
        """Report a vendor name written as a kind, with the protocol and URL it speaks."""
        kind, url = _COMPATIBLE[vendor.lower()]
        self.report(
            full,
            f"invalid value {vendor!r}",
            f"{vendor} speaks the {kind} protocol: write kind: {kind}, base_url: {url}",
        )

    def _value_problem(self, full: Path_, err: S.SchemaError) -> None:
        """Report an empty, missing, invalid or wrongly typed value."""
        kind = err.type
        loc = err.loc
        if kind == "too_short" and isinstance(err.input, list) and not err.input:
            self.report(full, f"'{loc[-1]}' is empty", "write at least one item")
        elif kind == "missing":
            self.report(
                full[:-1] if len(full) > 1 else full,
                f"missing required key '{loc[-1]}'",
                f"add '{loc[-1]}:'",
                key=True,
            )
        elif kind == "literal_error":
            got = err.input
            expected = [x.strip(" '") for x in err.expected.replace(" or ", ", ").split(",")]
            hint = did_you_mean(str(got), expected) or f"expected {err.expected}"
            self.report(full, f"invalid value {got!r}", hint)
        elif kind in ("model_type", "model_attributes_type", "dict_type", "list_type"):
            want = "a list" if kind == "list_type" else "a mapping (key: value)"
            self.report(full, f"expected {want}, got {_yaml_type(err.input)}")
        else:
            msg = err.msg.removeprefix("Value error, ")
            got = err.input
            if kind not in ("value_error",) and not isinstance(got, dict | list | Secret):
                msg += f", got {got!r}"
            self.report(full, msg[:1].lower() + msg[1:])

    # -- the pass ------------------------------------------------------------------------------

    def run(self, profile: str | None) -> RoutingGraph | None:
        data = self.loaded.data
        if data is None:
            if not self.problems:
                self.report((), "the file is empty", "start with 'version: 1'")
            return None
        top = self._top_level(data)  # first: a misspelled section is read as the one it meant
        data = self.loaded.data = self._secret_placement(data, ())
        speeds = self._speeds(data.get("speeds"))
        classifiers = self._classifiers(data.get("retry"))
        breakers = self._breakers(data.get("breakers"))
        defaults = self.validate(S.DefaultsSpec, data.get("defaults") or {}, ("defaults",))
        defaults = defaults or S.DefaultsSpec()
        self._check_defaults(defaults, speeds, classifiers, breakers)
        cache_spec = self.validate(S.CacheSpec, data.get("cache") or {}, ("cache",))
        providers = self._providers(data.get("providers"), defaults, speeds, classifiers, breakers)
        groups = self._groups(data.get("groups"), providers)
        routes = self._routes(data.get("routes"), providers, groups, defaults.deadline)
        telemetry = self._telemetry(data.get("telemetry"), providers)
        server = self._server(data.get("server"))
        if not top or any(p.severity == "error" for p in self.problems):
            return None
        self._unused(providers, groups, routes)
        cache = _cache(cache_spec or S.CacheSpec())
        warnings = [p for p in self.problems if p.severity == "warning"]
        return RoutingGraph(
            version=1,
            providers=frozen_map(providers),
            groups=frozen_map(groups),
            routes=tuple(routes),
            speeds=frozen_map(speeds),
            classifiers=frozen_map(classifiers),
            breakers=frozen_map(breakers),
            cache=cache,
            deadline=defaults.deadline,
            problems=tuple(sort_problems(warnings)),
            sources=tuple(self.loaded.files),
            profile=profile,
            telemetry=telemetry,
            server=server,
        )

    def _telemetry(self, raw: Any, providers: Mapping[str, Provider]) -> TelemetryConfig:
        spec = self.validate(S.TelemetrySpec, {} if raw is None else raw, ("telemetry",))
        if spec is None:
            return TelemetryConfig()
        for name in spec.provider_names:
            if name not in providers:
                self.report(
                    ("telemetry", "provider_names", name),
                    f"unknown provider '{name}'",
                    did_you_mean(name, providers) or "name a provider of this file",
                    key=True,
                )
        return TelemetryConfig(
            spec.metrics,
            spec.traces,
            spec.capture_content,
            spec.logs.format,
            spec.logs.level,
            frozen_map(spec.provider_names),
        )

    def _server(self, raw: Any) -> ServerConfig:
        """The gateway's section; a client key written in the file (not ``${NAME}``) warns."""
        spec = self.validate(S.ServerSpec, {} if raw is None else raw, ("server",))
        if spec is None:
            return ServerConfig()
        keys: dict[str, ClientKey] = {}
        seen: dict[str, str] = {}
        for name, k in spec.keys.items():
            value = k.key.reveal() if isinstance(k.key, Secret) else k.key
            if not isinstance(k.key, Secret):
                self.report(
                    ("server", "keys", name, "key"),
                    "a client key written in the file is readable by whoever reads it",
                    "write key: ${NAME} and set NAME in the environment",
                    severity="warning",
                )
            if not value:
                self.report(("server", "keys", name, "key"), "the key is empty", "set its variable")
            elif value in seen:
                self.report(("server", "keys", name, "key"), f"the same key as '{seen[value]}'")
            seen.setdefault(value, name)
            limits = Limits(k.limits.rpm, k.limits.tpm) if k.limits is not None else None
            models = tuple(k.models) if k.models is not None else None
            keys[name] = ClientKey(name, k.key, models, limits, frozen_map(k.metadata), k.admin)
        return ServerConfig(
            spec.listen, spec.workers, spec.auth, frozen_map(keys), spec.keepalive, spec.drain, spec.max_body
        )

    def _secret_placement(self, node: Any, path: Path_) -> Any:
        """Environment values are secrets, so only fields that are never shown (api_key,
        base_url, headers, cache.backend) may hold one. Elsewhere it is an error, and the value is
        dropped so that no later message can quote it. Returns the node, cleaned."""
        if isinstance(node, Secret) and not _secret_capable(path) and _known_field(path):
            self.report(
                path,
                "an environment value (${...}) is a secret and cannot be used here",
                "only api_key, base_url, headers, cache.backend and server.keys.*.key read the "
                "environment; put per-environment values in a profile",
            )
            self._dropped.append(format_path(path))
            return None
        if isinstance(node, dict):
            return {k: self._secret_placement(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._secret_placement(v, (*path, i)) for i, v in enumerate(node)]
        return node

    def _top_level(self, data: dict[str, Any]) -> bool:
        ok = True
        allowed = set(S.RoutesSpec.model_fields)
        for key in list(data):
            if key not in allowed:
                ok = False
                self.report(
                    (key,),
                    f"unknown top-level key '{key}'",
                    did_you_mean(key, allowed) or f"allowed keys: {', '.join(sorted(allowed))}",
                    key=True,
                    shown=(),
                )
                meant = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                if meant and meant[0] not in data:  # read it as what it meant: no cascade
                    data[meant[0]] = data.pop(key)
                    self._alias((key,), (meant[0],))
        for key in ("version", "providers", "routes"):
            if key not in data:
                ok = False
                self.report((), f"missing required key '{key}'", f"add '{key}:' at the top level")
        if "version" in data and data["version"] != 1:
            ok = False
            self.report(
                ("version",), f"unsupported version {data['version']!r}", "this engine reads version: 1"
            )
        for key in ("speeds", "retry", "breakers", "providers", "groups"):
            if key in data and data[key] is not None and not isinstance(data[key], dict):
                ok = False
                self.report((key,), f"'{key}' must be a mapping of names", f"write {key}: {{name: ...}}")
        if "routes" in data and not isinstance(data["routes"], list):
            ok = False
            self.report(
                ("routes",),
                "'routes' must be a list",
                "write each route as a '- match: ...' / 'to: ...' item",
            )
        elif data.get("routes") == []:
            ok = False
            self.report(
                ("routes",),
                "'routes' is empty: no request could be routed",
                "add at least one route, e.g. '- to: <provider>'",
            )
        return ok

    def _alias(self, written: Path_, meant: Path_) -> None:
        """Locate what is checked under ``meant`` where it was written (under ``written``)."""
        n = len(written)
        for table in (self.loaded.locations.keys, self.loaded.locations.values):
            for path, loc in list(table.items()):
                if path[:n] == written:
                    table[(*meant, *path[n:])] = loc

    def _written(self, section: str, key: str) -> bool:
        """Whether the config (or its profile) wrote ``section.key``."""
        return key in self._raw(section)

    def _raw(self, section: str) -> dict[str, Any]:
        value = self.loaded.data.get(section)
        return value if isinstance(value, dict) else {}

    def _entries(self, section: str, raw: Any) -> dict[str, Any]:
        """Validate each named entry of a section on its own, so one bad entry hides nothing."""
        out: dict[str, Any] = {}
        if not isinstance(raw, dict):
            return out
        model = S.SECTIONS[section]
        for name, body in raw.items():
            spec = self.validate(model, {} if body is None else body, (section, name))
            if spec is not None:
                out[name] = spec
        return out

    def _speeds(self, raw: Any) -> dict[str, Speed]:
        specs: dict[str, S.SpeedSpec] = self._entries("speeds", raw)
        done: dict[str, Speed] = {}
        active: set[str] = set()

        def resolve(name: str) -> Speed:
            if name in done:
                return done[name]
            spec, parent_name = specs[name], specs[name].extends
            active.add(name)
            if parent_name is None or parent_name == name:
                parent = BUILTIN_SPEEDS.get(name, BUILTIN_SPEEDS["medium"])
            elif parent_name in active:
                self.report(
                    ("speeds", name, "extends"),
                    f"speed '{name}' extends itself through '{parent_name}'",
                    "make one of them stand alone",
                )
                parent = BUILTIN_SPEEDS["medium"]
            elif parent_name in specs:
                parent = resolve(parent_name)
            elif parent_name in BUILTIN_SPEEDS:
                parent = BUILTIN_SPEEDS[parent_name]
            else:
                self.report(
                    ("speeds", name, "extends"),
                    f"unknown speed '{parent_name}'",
                    did_you_mean(parent_name, {*BUILTIN_SPEEDS, *specs}),
                )
                parent = BUILTIN_SPEEDS["medium"]
            active.discard(name)
            done[name] = _speed(name, spec, parent)
            return done[name]

        for name in specs:
            resolve(name)
        return {**BUILTIN_SPEEDS, **done}

    def _classifiers(self, raw: Any) -> dict[str, Classifier]:
        specs: dict[str, S.ClassifierSpec] = self._entries("retry", raw)
        out = dict(BUILTIN_CLASSIFIERS)
        for name, spec in specs.items():
            base = BUILTIN_CLASSIFIERS.get(name, TRANSIENT)
            ro, fo = spec.retry_on, spec.failover_on
            out[name] = Classifier(
                name,
                frozenset(ro.status) if ro else base.retry_status,
                frozenset(ro.errors) if ro else base.retry_errors,
                frozenset(fo.status) if fo else base.failover_status,
                frozenset(fo.errors) if fo else base.failover_errors,
                (spec.retry_after or ("honor" if base.honor_retry_after else "ignore")) == "honor",
            )
        return out

    def _breakers(self, raw: Any) -> dict[str, Breaker]:
        specs: dict[str, S.BreakerSpec] = self._entries("breakers", raw)
        out = dict(BUILTIN_BREAKERS)
        for name, spec in specs.items():
            if name == NO_BREAKER:
                self.report(
                    ("breakers", name),
                    f"'{NO_BREAKER}' is reserved",
                    "it means 'no breaker'; pick another name",
                    key=True,
                )
            out[name] = Breaker(name, spec.failures, spec.recovery, spec.scope)
        return out

    def _check_defaults(
        self,
        d: S.DefaultsSpec,
        speeds: Mapping[str, Any],
        classifiers: Mapping[str, Any],
        breakers: Mapping[str, Any],
    ) -> None:
        self._ref(("defaults", "speed"), d.speed, speeds, "speed")
        self._ref(("defaults", "retry"), d.retry, classifiers, "retry classifier")
        if d.breaker != NO_BREAKER:
            self._ref(("defaults", "breaker"), d.breaker, breakers, "breaker")

    def _ref(self, path: Path_, name: str, table: Mapping[str, Any], what: str) -> Any:
        if name in table:
            return table[name]
        if name in self._raw(_SECTION_OF[what]):
            return None  # written but invalid: reported where it is written
        self.report(
            path,
            f"unknown {what} '{name}'",
            did_you_mean(name, table) or f"known: {', '.join(sorted(table))}",
        )
        return None

    # -- providers -----------------------------------------------------------------------------

    def _providers(
        self,
        raw: Any,
        d: S.DefaultsSpec,
        speeds: Mapping[str, Speed],
        classifiers: Mapping[str, Classifier],
        breakers: Mapping[str, Breaker],
    ) -> dict[str, Provider]:
        """Build every provider whose references and template resolve."""
        specs: dict[str, S.ProviderSpec] = self._entries("providers", raw)
        out: dict[str, Provider] = {}
        for name, spec in specs.items():
            path: Path_ = ("providers", name)
            self._check_slash(path, "provider", name)
            speed, retry, breaker = self._policies(path, spec, d, speeds, classifiers, breakers)
            template = self._template(name, spec)
            if speed is None or retry is None or template is None:
                continue
            base_url = spec.base_url if spec.base_url is not None else DEFAULT_BASE_URLS[spec.kind]
            self._check_url(path, base_url)
            self._check_env(path, spec)
            out[name] = Provider(
                name=name,
                kind=spec.kind,
                base_url=base_url,
                api_key=spec.api_key,
                speed=speed,
                retry=retry,
                breaker=breaker,
                pool=Pool(spec.pool.max_connections, spec.pool.max_keepalive, spec.pool.keepalive_expiry),
                headers=frozen_map(spec.headers),
                template=template[0],
                template_path=template[1],
                limits=Limits(spec.limits.rpm, spec.limits.tpm) if spec.limits else None,
                max_response=(spec.max_response if spec.max_response is not None else DEFAULT_MAX_RESPONSE),
                models=self._models(path, spec),
                wire=self._wire(path, spec) or DEFAULT_WIRE,
            )
        return out

    def _check_slash(self, path: Path_, what: str, name: str) -> None:
        """Report a provider or group name containing '/', which targets reserve."""
        if "/" in name:
            self.report(
                path,
                f"{what} name '{name}' contains '/'",
                "'/' separates provider and model in targets",
                key=True,
            )

    def _policies(
        self,
        path: Path_,
        spec: S.ProviderSpec,
        d: S.DefaultsSpec,
        speeds: Mapping[str, Speed],
        classifiers: Mapping[str, Classifier],
        breakers: Mapping[str, Breaker],
    ) -> tuple[Speed | None, Classifier | None, Breaker | None]:
        """The provider's speed, retry classifier and breaker: its own, else the defaults."""
        speed = (
            self._ref((*path, "speed"), spec.speed or d.speed, speeds, "speed")
            if spec.speed
            else speeds.get(d.speed)
        )
        retry = (
            self._ref((*path, "retry"), spec.retry, classifiers, "retry classifier")
            if spec.retry
            else classifiers.get(d.retry)
        )
        bname = spec.breaker or d.breaker
        breaker = None
        if bname != NO_BREAKER:
            breaker = (
                self._ref((*path, "breaker"), bname, breakers, "breaker")
                if spec.breaker
                else breakers.get(bname)
            )
        return speed, retry, breaker

    def _models(self, path: Path_, spec: S.ProviderSpec) -> Mapping[str, Model]:
        """The provider's declared models, with their prices and wire options."""
        return frozen_map(
            {
                m: Model(
                    m,
                    ms.context,
                    Price(ms.price.input, ms.price.output, ms.price.cache_read, ms.price.cache_write)
                    if ms.price
                    else None,
                    wire=self._wire((*path, "models", m), spec, ms),
                )
                for m, ms in spec.models.items()
            }
        )

    def _wire(
        self, path: Path_, spec: S.ProviderSpec, model: S.ModelSpec | None = None
    ) -> WireOptions | None:
        """The wire options written for the provider (``model`` None: always an object) or for
        one of its models (None when the model writes none)."""
        own = model if model is not None else spec
        written = [k for k in _WIRE_KEYS if k in own.model_fields_set]
        foreign = [k for k in written if k not in get_kind(spec.kind).wire_keys]
        if foreign:
            readers = " or ".join(k.name for k in KINDS.values() if foreign[0] in k.wire_keys)
            self.report(
                (*path, foreign[0]),
                f"{foreign[0]} applies to kind {readers} only, not {spec.kind}",
                "remove it: this kind has one field for it",
                key=True,
            )
        if model is not None and not written:
            return None
        values = {k: getattr(spec, k) for k in _WIRE_KEYS}
        values.update({k: getattr(own, k) for k in written if getattr(own, k) is not None})
        return WireOptions(**values)

    def _check_url(self, path: Path_, url: str | Secret) -> None:
        text = url.reveal() if isinstance(url, Secret) else url
        if not text.startswith(("http://", "https://")):
            shown = "the value" if isinstance(url, Secret) else f"'{text}'"
            self.report(
                (*path, "base_url"),
                f"{shown} is not an http(s) URL",
                "write http://host:port/... or https://...",
            )

    def _check_env(self, path: Path_, spec: S.ProviderSpec) -> None:
        if isinstance(spec.api_key, Secret) and not spec.api_key.reveal():
            self.report(
                (*path, "api_key"),
                "api_key is empty (its environment variable is not set)",
                "set it before routing requests to this provider",
                severity="warning",
            )

    def _template(self, name: str, spec: S.ProviderSpec) -> tuple[RequestTemplate, str] | None:
        rel, tpl, failure = self.template_check.check(
            spec.kind, spec.template, next(iter(spec.models), "sample-model")
        )
        path: Path_ = ("providers", name, "template")
        if isinstance(failure, str):
            self.report(
                path,
                failure,
                f"looked in {self.base_dir} and the built-in templates" if "not found" in failure else "",
            )
        elif failure is not None:
            self.problems.append(dataclasses.replace(failure, path=format_path(path)))
        return (tpl, rel) if tpl is not None else None

    # -- groups and routes ---------------------------------------------------------------------

    def _groups(self, raw: Any, providers: Mapping[str, Provider]) -> dict[str, Group]:
        """Check and build every group whose members all resolve."""
        specs: dict[str, S.GroupSpec] = self._entries("groups", raw)
        self._check_group_names(specs, providers)
        for name, spec in specs.items():
            self._check_group(name, spec)
        built: dict[str, Group] = {}
        build = self._group_builder(specs, providers, built)
        for name in specs:
            group = build(name)
            if group is not None:
                STRATEGIES[group.strategy].check_group(group, ("groups", name), self.report)
        return built

    def _check_group_names(self, specs: Mapping[str, S.GroupSpec], providers: Mapping[str, Provider]) -> None:
        """Report group names that clash with a provider or contain '/'."""
        known_providers = set(providers) | set(self._raw("providers"))
        for name in specs:
            if name in known_providers:
                self.report(
                    ("groups", name),
                    f"group '{name}' has the same name as a provider",
                    "rename one of them: a target name must be unambiguous",
                    key=True,
                )
            self._check_slash(("groups", name), "group", name)

    def _check_group(self, name: str, spec: S.GroupSpec) -> None:
        """Check one group's strategy options and its max_attempts against its targets."""
        STRATEGIES[spec.strategy].check(spec, ("groups", name), self.report)
        if spec.max_attempts is not None and spec.max_attempts > len(spec.targets):
            self.report(
                ("groups", name, "max_attempts"),
                f"max_attempts {spec.max_attempts} exceeds the group's {len(spec.targets)} targets",
                "it is capped",
                severity="warning",
            )

    def _group_builder(
        self, specs: Mapping[str, S.GroupSpec], providers: Mapping[str, Provider], built: dict[str, Group]
    ) -> typing.Callable[[str], Group | None]:
        """A builder of groups by name, filling ``built`` (nested groups first, each once)."""
        cycle_free = self._cycles(specs)
        failed: set[str] = set()  # built once, reported once

        def build(name: str) -> Group | None:
            if name in built or name in failed:
                return built.get(name)
            spec = specs[name]
            members = self._members(name, spec, providers, specs, build if cycle_free else None)
            if members is None:
                failed.add(name)
                return None
            g = Group(
                name,
                spec.strategy,
                members,
                min(spec.max_attempts or len(members), len(members)),
                spec.hedge_after,
                spec.on_limit,
            )
            built[name] = g
            return g

        return build

    def _members(
        self,
        name: str,
        spec: S.GroupSpec,
        providers: Mapping[str, Provider],
        specs: Mapping[str, S.GroupSpec],
        build: Any,
    ) -> tuple[Member, ...] | None:
        """The group's members, every target reported; None when any does not resolve."""
        members: list[Member] = []
        for i, m in enumerate(spec.targets):
            node = self._node((*("groups", name, "targets"), i), m.target, providers, specs, build)
            if node is not None:
                members.append(Member(node, m.weight))
        return tuple(members) if len(members) == len(spec.targets) else None

    def _cycles(self, specs: Mapping[str, S.GroupSpec]) -> bool:
        state: dict[str, int] = {}
        found = False

        def visit(name: str, stack: list[str]) -> None:
            nonlocal found
            state[name] = 1
            for i, m in enumerate(specs[name].targets):
                head = TargetRef.parse(m.target).head
                if TargetRef.parse(m.target).model is not None or head not in specs:
                    continue
                if state.get(head) == 1:
                    cyc = [*stack[stack.index(head) :], head] if head in stack else [name, head]
                    self.report(
                        ("groups", name, "targets", i),
                        "group cycle: " + " -> ".join(cyc),
                        "a group may not reach itself; remove one of these edges",
                    )
                    found = True
                elif head not in state:
                    visit(head, [*stack, head])
            state[name] = 2

        for name in specs:
            if name not in state:
                visit(name, [name])
        return not found

    def _node(
        self, path: Path_, text: str, providers: Mapping[str, Provider], groups: Mapping[str, Any], build: Any
    ) -> Node | None:
        ref = TargetRef.parse(text)
        raw_providers = self._raw("providers")
        if ref.model is None and ref.head in groups:
            return build(ref.head) if build is not None else None
        if ref.head in providers:
            prov = providers[ref.head]
            if ref.model is not None and prov.models and ref.model not in prov.models:
                self.report(
                    path,
                    f"unknown model '{ref.model}' for provider '{ref.head}'",
                    did_you_mean(ref.model, prov.models) or f"declare it under providers.{ref.head}.models",
                )
                return None
            if ref.model == "":
                self.report(path, f"'{text}' has an empty model name", "write provider/model")
                return None
            return Target(prov, ref.model)
        if ref.head in raw_providers:
            return None  # the provider itself is broken; that is reported already
        if ref.model is None and ref.head in self._raw("groups"):
            return None  # the group itself is broken; that is reported already
        if ref.model is not None and ref.head in groups:
            self.report(path, f"'{ref.head}' is a group: a group takes no '/model'", f"write '{ref.head}'")
            return None
        what = "provider" if ref.model is not None else "provider or group"
        self.report(
            path,
            f"unknown {what} '{ref.head}'",
            did_you_mean(ref.head, [*raw_providers, *([] if ref.model else groups)]),
        )
        return None

    def _routes(
        self,
        raw: Any,
        providers: Mapping[str, Provider],
        groups: Mapping[str, Group],
        default_deadline: float,
    ) -> list[Route]:
        if not isinstance(raw, list):
            return []
        out: list[Route] = []
        shadows = Shadows()
        for i, body in enumerate(raw):
            path: Path_ = ("routes", i)
            spec = self.validate(S.RouteSpec, body if body is not None else {}, path)
            if spec is None:
                continue
            node = self._node((*path, "to"), spec.to, providers, self._raw("groups"), groups.get)
            if node is None:
                continue
            deadline = spec.deadline if spec.deadline is not None else default_deadline
            written = spec.deadline is not None or self._written("defaults", "deadline")
            worst = worst_case(node)
            loc = self.loaded.locations.find(path)
            route = Route(
                i,
                Match.build(spec.match.model, spec.match.metadata),
                node,
                deadline,
                worst,
                tuple(flatten(node)),
                f"{loc.file}:{loc.line}" if loc else "",
                self._constraints(path, spec, tuple(flatten(node))),
            )
            if worst > deadline and written:  # the built-in deadline cuts retries by design
                self.report(
                    (*path, "to"),
                    f"worst case {fd(worst)} exceeds the deadline {fd(deadline)}",
                    "the deadline cuts retries short; raise it or trim retries/timeouts",
                    severity="warning",
                )
            shadow = shadows.first(route.match)
            if shadow is not None:
                self.report(
                    path,
                    f"route {i} can never match: route {shadow} matches everything it does",
                    "reorder the routes",
                    severity="warning",
                )
            shadows.add(route)
            out.append(route)
        return out

    def _constraints(self, path: Path_, spec: S.RouteSpec, targets: tuple[Target, ...]) -> Constraints | None:
        """The route's ``max_price`` / ``max_latency``; an error when the prices rule out every
        target it can reach."""
        mp = spec.max_price
        if mp is None and spec.max_latency is None:
            return None
        limits = Constraints(mp.input if mp else None, mp.output if mp else None, spec.max_latency)
        if mp is not None and mp.input is None and mp.output is None:
            self.report((*path, "max_price"), "max_price sets no limit", "write input, output or both")
        elif spec.max_latency is not None and spec.max_latency <= 0:
            self.report((*path, "max_latency"), "max_latency must be more than 0")
        elif limits.prices and (why := excluded_all(limits, targets)) is not None:
            self.report(
                (*path, "max_price"),
                "max_price rules out every target of this route: " + "; ".join(why),
                "raise the limit, price the models, or route to cheaper ones",
            )
        return limits

    def _unused(
        self, providers: Mapping[str, Provider], groups: Mapping[str, Group], routes: list[Route]
    ) -> None:
        used = {t.provider.name for r in routes for t in r.targets}
        for name in providers:
            if name not in used:
                self.report(
                    ("providers", name),
                    f"provider '{name}' is not reachable from any route",
                    "route to it or remove it",
                    key=True,
                    severity="warning",
                )
        reached: set[str] = set()
        for r in routes:
            groups_in(r.to, reached)
        for name in groups:
            if name not in reached:
                self.report(
                    ("groups", name),
                    f"group '{name}' is not reachable from any route",
                    "route to it or remove it",
                    key=True,
                    severity="warning",
                )


# -- pure helpers -----------------------------------------------------------------------------


def _known_field(path: Path_) -> bool:
    """False for a misspelled key (its own error says more); True for real or free-form keys."""
    allowed = S.allowed_keys(S.RoutesSpec, path[:-1])
    return not allowed or path[-1] in allowed


def _secret_capable(path: Path_) -> bool:
    match path:
        case ("providers", _, "api_key" | "base_url") | ("providers", _, "headers", _):
            return True
        case ("cache", "backend") | ("server", "keys", _, "key"):
            return True
    return False


def _speed(name: str, spec: S.SpeedSpec, parent: Speed) -> Speed:
    b = spec.backoff
    pb = parent.backoff

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return Speed(
        name,
        pick(spec.connect, parent.connect),
        pick(spec.read, parent.read),
        pick(spec.pool, parent.pool),
        pick(spec.retries, parent.retries),
        Backoff(
            pick(b and b.base, pb.base),
            pick(b and b.factor, pb.factor),
            pick(b and b.max, pb.max),
            pick(b and b.jitter, pb.jitter),
        ),
    )


def _cache(spec: S.CacheSpec) -> CacheConfig:
    r = spec.responses
    return CacheConfig(
        spec.backend, spec.models.ttl, r.ttl if r else None, r.max_temperature if r else 0.0, spec.namespace
    )


def _yaml_type(value: Any) -> str:
    """How a user would name the type of a value they wrote."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, Secret):
        return "a string (from the environment)"
    return "a list" if isinstance(value, list) else "a mapping"
