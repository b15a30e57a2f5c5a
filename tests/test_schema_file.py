"""The shipped routes.schema.json (for editors) is what `engine schema` prints today."""

import json
from pathlib import Path

from engine.schema import json_schema


def test_shipped_schema_is_current() -> None:
    shipped = json.loads((Path(__file__).parent.parent / "routes.schema.json").read_text())
    assert shipped == json_schema(), "run: engine schema -o routes.schema.json"


def test_schema_documents_every_provider_field() -> None:
    provider = json_schema()["$defs"]["ProviderSpec"]["properties"]
    undocumented = [k for k, v in provider.items() if "description" not in v]
    assert undocumented == []


# -- every valid config validates against the shipped schema (what editors check) ---------------

ROOT = Path(__file__).parent.parent


def _plain(loaded_data: object) -> object:
    """The loaded document as JSON would hold it (environment values are still strings)."""
    from engine.values import Secret

    if isinstance(loaded_data, dict):
        return {k: _plain(v) for k, v in loaded_data.items()}
    if isinstance(loaded_data, list):
        return [_plain(v) for v in loaded_data]
    return loaded_data.reveal() if isinstance(loaded_data, Secret) else loaded_data


def _documents() -> list[tuple[str, object]]:
    """The shipped config, merged with each profile; every example config; and every
    module-level config text in the test suite that compiles."""
    import ast

    from engine.compiler import compile_text
    from engine.errors import ConfigError
    from engine.loader import load, load_text

    text = (ROOT / "routes.yaml").read_text()
    docs: list[tuple[str, object]] = [("routes.yaml", load_text(text).data)]
    for profile in sorted((ROOT / "profiles").glob("*.yaml")):
        merged = load(text, profile=profile.stem, profiles_dir=ROOT / "profiles", env={})
        docs.append((f"routes.yaml + {profile.name}", _plain(merged.data)))
    for example in sorted((ROOT / "examples").rglob("*.yaml")) if (ROOT / "examples").is_dir() else []:
        if example.parent.name != "profiles":
            docs.append((str(example.relative_to(ROOT)), load_text(example.read_text()).data))
    for module in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if not (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and node.value.value.startswith("version: 1\n")
            ):
                continue
            config = node.value.value
            for hole, value in (
                ("{fake}", "http://127.0.0.1:1"),
                ("{backend}", "memory"),
                ("{refused}", "1"),
            ):
                config = config.replace(hole, value)
            try:
                compile_text(config, base_dir=ROOT, env={})
            except ConfigError:
                continue  # a config a test means to be wrong, or one with more holes
            docs.append((f"{module.relative_to(ROOT)}:{node.lineno}", load_text(config).data))
    return docs


def test_every_valid_config_fits_the_schema() -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    docs = _documents()
    assert len(docs) >= 10
    failures = {
        name: [f"{list(e.path)}: {e.message[:120]}" for e in validator.iter_errors(doc)] for name, doc in docs
    }
    assert {k: v for k, v in failures.items() if v} == {}
