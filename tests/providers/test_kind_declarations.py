"""A kind is declared once, in its module: the schema, the built-in defaults, the compiler's hints
and the fake's wire registry all read that declaration."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from engine.builtins import DEFAULT_BASE_URLS
from engine.compiler import compile_text
from engine.errors import ConfigError
from engine.fake.wires import KINDS as FAKE_KINDS
from engine.fake.wires import WIRES, route
from engine.providers import KINDS
from engine.schema import json_schema

NAMES = list(KINDS)


def _provider(kind: str, extra: str = "") -> str:
    return (
        f"version: 1\nproviders:\n  p:\n    kind: {kind}\n    api_key: k\n    models: [m]\n{extra}"
        "routes:\n  - match: {model: '*'}\n    to: p/m\n"
    )


def test_the_schema_enum_and_descriptions_come_from_the_registry() -> None:
    kind = json_schema()["$defs"]["ProviderSpec"]["properties"]["kind"]
    assert kind["enum"] == NAMES
    base_url = json_schema()["$defs"]["ProviderSpec"]["properties"]["base_url"]
    for k in KINDS.values():
        assert f"{k.name}: {k.description}" in kind["description"]
        assert k.default_base_url in base_url["description"]


@pytest.mark.parametrize("name", NAMES)
def test_a_provider_without_base_url_gets_its_kinds_default(name: str) -> None:
    kind = KINDS[name]
    assert urlsplit(kind.default_base_url).scheme in ("http", "https")
    assert DEFAULT_BASE_URLS[name] == kind.default_base_url
    graph = compile_text(_provider(name))
    assert graph.providers["p"].base_url == kind.default_base_url


@pytest.mark.parametrize(("kind", "vendor"), [(k.name, v) for k in KINDS.values() for v in k.compatible])
def test_every_compatible_vendor_written_as_a_kind_gets_its_base_url(kind: str, vendor: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_text(_provider(vendor))
    (problem,) = info.value.problems
    assert f"kind: {kind}" in problem.hint
    assert KINDS[kind].compatible[vendor] in problem.hint


@pytest.mark.parametrize("name", [n for n in NAMES if "max_tokens_field" not in KINDS[n].wire_keys])
def test_a_wire_key_a_kind_does_not_read_names_the_kinds_that_do(name: str) -> None:
    readers = [k.name for k in KINDS.values() if "max_tokens_field" in k.wire_keys]
    assert readers == ["openai"]
    with pytest.raises(ConfigError) as info:
        compile_text(_provider(name, "    max_tokens_field: max_tokens\n"))
    (problem,) = info.value.problems
    assert problem.message == f"max_tokens_field applies to kind openai only, not {name}"


def test_the_fake_serves_every_kind_and_only_those() -> None:
    assert list(FAKE_KINDS) == list(WIRES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_fake_routes_what_each_kind_sends(name: str) -> None:
    kind, wire = KINDS[name], WIRES[name]
    # the fake's base URL for a kind ends as the real API's does
    assert urlsplit(kind.default_base_url).path == wire.base_path
    base = "http://127.0.0.1:1" + wire.base_path
    headers = kind.auth_headers("key")
    for stream in (False, True):
        found = route("POST", urlsplit(kind.url(base, "m", stream)).path, headers)
        assert found is not None and found[0] is wire and found[1] in ("chat", "stream")
    found = route("GET", urlsplit(kind.models_url(base)).path, headers)
    assert found is not None and found[:2] == (wire, "models")


def test_the_fake_routes_nothing_else() -> None:
    assert route("POST", "/v1/completions", {}) is None
    assert route("GET", "/v1/chat/completions", {}) is None
