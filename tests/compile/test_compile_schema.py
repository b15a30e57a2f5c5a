"""engine.schema: strict, frozen specs; a JSON Schema with docs for every field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import schema as S
from engine.cli import main
from engine.values import Secret


def test_unknown_keys_are_errors_at_every_level() -> None:
    for model, data, loc in [
        (S.ProviderSpec, {"kind": "openai", "api_kye": "x"}, ("api_kye",)),
        (S.ProviderSpec, {"kind": "openai", "pool": {"max_conn": 1}}, ("pool", "max_conn")),
        (S.SpeedSpec, {"backoff": {"jiter": 1}}, ("backoff", "jiter")),
        (S.GroupSpec, {"targets": [{"target": "a", "wieght": 1}]}, ("targets", 0, "wieght")),
        (S.RouteSpec, {"to": "a", "match": {"modle": "x"}}, ("match", "modle")),
        (S.CacheSpec, {"responses": {"tll": 1}}, ("responses", "tll")),
    ]:
        spec, errors = S.validate(model, data)
        assert spec is None
        assert [(e.loc, e.type) for e in errors] == [(loc, "extra_forbidden")]


def test_allowed_keys_follow_nested_models() -> None:
    assert "max_connections" in S.allowed_keys(S.ProviderSpec, ("pool",))
    assert S.allowed_keys(S.GroupSpec, ("targets", 0)) == {"target", "weight"}
    assert "jitter" in S.allowed_keys(S.SpeedSpec, ("backoff",))


def test_specs_are_frozen() -> None:
    spec, _ = S.validate(S.BreakerSpec, {"failures": 3})
    with pytest.raises(Exception, match="frozen"):
        spec.failures = 4


def test_types_are_checked_and_durations_parsed() -> None:
    spec, errors = S.validate(S.SpeedSpec, {"connect": "250ms", "read": 2, "retries": 1})
    assert errors == [] and (spec.connect, spec.read, spec.retries) == (0.25, 2.0, 1)
    _, errors = S.validate(S.SpeedSpec, {"retries": "many", "read": "soon"})
    assert sorted(e.loc for e in errors) == [("read",), ("retries",)]


@pytest.mark.parametrize(
    "model, data",
    [
        (S.SpeedSpec, {"retries": -1}),
        (S.BreakerSpec, {"failures": 0}),
        (S.GroupSpec, {"targets": []}),
        (S.GroupSpec, {"targets": ["a"], "max_attempts": 0}),
        (S.MemberSpec, {"target": "a", "weight": 0}),
        (S.CodesSpec, {"status": [99]}),
        (S.CodesSpec, {"errors": ["timout"]}),
        (S.ProviderSpec, {"kind": "openia"}),
        (S.GroupSpec, {"targets": ["a"], "strategy": "random"}),
        (S.RouteSpec, {"to": "/x"}),
        (S.RouteSpec, {"to": "p/"}),
        (S.CacheSpec, {"backend": "memcached://x"}),
        (S.MatchSpec, {"metadata": {"a": [1]}}),
    ],
)
def test_bad_values_are_rejected(model: type[S.Spec], data: dict[str, Any]) -> None:
    spec, errors = S.validate(model, data)
    assert spec is None and errors


def test_member_and_models_shorthands() -> None:
    spec, _ = S.validate(S.GroupSpec, {"targets": ["a/b", {"target": "c", "weight": 2}]})
    assert [(m.target, m.weight) for m in spec.targets] == [("a/b", 1.0), ("c", 2.0)]
    spec, _ = S.validate(S.ProviderSpec, {"kind": "ollama", "models": ["x", "y"]})
    assert list(spec.models) == ["x", "y"]


def test_secret_fields_stay_secret_and_others_refuse_them() -> None:
    spec, errors = S.validate(S.ProviderSpec, {"kind": "openai", "api_key": Secret("k")})
    assert errors == [] and isinstance(spec.api_key, Secret)
    _, errors = S.validate(S.ProviderSpec, {"kind": "openai", "speed": Secret("fast")})
    assert [e.loc for e in errors] == [("speed",)]


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = [("RoutesSpec", k, v) for k, v in schema["properties"].items()]
    for name, d in schema["$defs"].items():
        out += [(name, k, v) for k, v in d.get("properties", {}).items()]
    return out


def test_json_schema_documents_every_field() -> None:
    schema = S.json_schema()
    defs = schema["$defs"]

    def documented(prop: dict[str, Any]) -> bool:
        if "description" in prop:
            return True
        refs = [prop.get("$ref")] + [a.get("$ref") for a in prop.get("anyOf", [])]
        return any(r and "description" in defs[r.rsplit("/", 1)[-1]] for r in refs)

    missing = [f"{owner}.{key}" for owner, key, prop in _properties(schema) if not documented(prop)]
    assert missing == []
    assert all("description" in d for d in defs.values())


def test_json_schema_is_strict_and_knows_the_required_keys() -> None:
    schema = S.json_schema()
    assert set(schema["required"]) == {"version", "providers", "routes"}
    assert schema["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False
        for d in schema["$defs"].values()
        if d.get("type") == "object" and "properties" in d
    )


def test_engine_schema_prints_loadable_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "providers" in schema["properties"]


def test_engine_schema_writes_a_file(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "s.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert json.loads(target.read_text()) == S.json_schema()
