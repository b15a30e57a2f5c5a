"""The ``telemetry:`` section compiled, provider names, and where the libraries may be imported."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIG

from engine.compiler import compile_text
from engine.errors import ConfigError
from engine.graph import RoutingGraph, TelemetryConfig
from engine.schema import json_schema
from engine.telemetry.names import WELL_KNOWN, provider_name, server_address

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "engine" / "telemetry"


def test_the_section_compiles_into_the_graph() -> None:
    graph = compile_text(
        CONFIG + "telemetry: {traces: true, capture_content: true, "
        "logs: {format: json, level: debug}, provider_names: {local: vllm}}\n"
    )
    assert graph.telemetry == TelemetryConfig(
        True, True, True, "json", "debug", graph.telemetry.provider_names
    )
    assert dict(graph.telemetry.provider_names) == {"local": "vllm"}
    assert (
        "telemetry metrics=on traces=on capture_content=on logs=json/debug provider_names=local:vllm\n"
    ) in graph.describe()


def test_the_default_section_is_not_shown(graph: RoutingGraph) -> None:
    assert graph.telemetry == TelemetryConfig()
    assert "telemetry" not in graph.describe()
    assert compile_text(CONFIG + "telemetry: {}\n").describe() == graph.describe()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{logs: {format: xml}}", "telemetry.logs.format"),
        ("{traces: maybe}", "telemetry.traces"),
        ("{metric: true}", "telemetry"),
        ("{provider_names: {lokal: vllm}}", "did you mean 'local'?"),
    ],
)
def test_a_bad_section_is_located(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_text(CONFIG + f"telemetry: {section}\n")
    assert message in str(err.value)
    assert str(err.value).count("error:") >= 1


def test_the_schema_describes_the_section() -> None:
    schema = json_schema()
    props = schema["$defs"]["TelemetrySpec"]["properties"]
    assert set(props) == {"metrics", "traces", "capture_content", "logs", "provider_names"}
    assert schema["$defs"]["LogsSpec"]["properties"]["format"]["enum"] == ["text", "json"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oa", "openai"),
        ("groq", "groq"),
        ("anth", "anthropic"),
        ("gem", "gcp.gemini"),
        ("local", "openai"),  # an unknown OpenAI-compatible host: the API it speaks
    ],
)
def test_provider_names_from_kind_and_host(graph: RoutingGraph, name: str, expected: str) -> None:
    assert provider_name(graph.providers[name]) == expected
    assert expected in WELL_KNOWN


def test_an_explicit_name_wins_and_a_secret_url_shows_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATE_URL", "https://api.mistral.ai/v1")
    graph = compile_text(CONFIG.replace('"http://127.0.0.1:8000/v1"', '"${PRIVATE_URL}"'))
    local = graph.providers["local"]
    assert provider_name(local) == "mistral_ai"  # read to pick a name, never shown
    assert server_address(local) is None
    assert provider_name(local, {"local": "vllm"}) == "vllm"
    assert server_address(graph.providers["groq"]) == ("api.groq.com", 443)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_each_library_stays_in_its_module() -> None:
    owners = {"prometheus_client": {"metrics"}, "opentelemetry": {"traces"}}
    bad = []
    for path in (ROOT / "engine").rglob("*.py"):
        mod = str(path.relative_to(ROOT / "engine").with_suffix(""))
        for lib, allowed in owners.items():
            if any(i.split(".")[0] == lib for i in _imports(path)) and not (
                mod.startswith("telemetry/") and mod.split("/")[1] in allowed
            ):
                bad.append(f"{mod} imports {lib}")
        if mod.startswith("telemetry/"):  # the run-time half: never the compile half
            bad += [
                f"{mod} imports {i}"
                for i in _imports(path)
                if i.startswith(("engine.loader", "engine.schema", "engine.compiler", "engine.cli"))
            ]
    assert bad == []


def test_the_compile_half_never_loads_the_telemetry_libraries() -> None:
    code = (
        "import sys, engine.cli, engine.compiler, engine.schema, engine.plan\n"
        "from engine.compiler import compile_text\n"
        "compile_text('version: 1\\nproviders: {a: {kind: openai}}\\nroutes: [{to: a}]\\n"
        "telemetry: {traces: true}\\n')\n"
        "print(sorted(m for m in ('prometheus_client', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"
