"""docs/reference.md describes the language the engine accepts: every key and every enumerated
value of the JSON Schema (engine.schema.json_schema) appears in it, so the two cannot drift
apart; the README links it (not a file outside the repository)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.schema import json_schema

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _schema_keys() -> set[str]:
    return {k for key, value in _walk(json_schema()) if key == "properties" for k in value}


def _schema_enums() -> set[str]:
    values: set[str] = set()
    for key, value in _walk(json_schema()):
        if key == "enum":
            values.update(str(v) for v in value)
        elif key == "const":
            values.add(str(value))
    return values


def _mentioned(text: str, word: str) -> bool:
    """As code (`word`, `word: ...` inside a backtick span) or as a YAML key in an example."""
    return bool(
        re.search(rf"`{re.escape(word)}[`:\s=]", text)
        or re.search(rf"^\s*(- )?{re.escape(word)}:", text, re.M)
        or re.search(rf"[{{,]\s*{re.escape(word)}:", text)
    )


def test_every_schema_key_is_in_the_reference() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    keys = _schema_keys()
    assert len(keys) > 50  # the walk found the schema's keys
    assert sorted(k for k in keys if not _mentioned(text, k)) == []


def test_every_enumerated_value_is_in_the_reference() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    values = _schema_enums()
    assert {"priority", "hedged", "anthropic", "honor", "protocol", "wait"} <= values
    assert sorted(v for v in values if f"`{v}`" not in text) == []


def test_the_walk_sees_a_key_added_to_the_schema(monkeypatch: Any) -> None:
    import engine.schema as schema

    real = schema.json_schema

    def more() -> dict[str, Any]:
        s = real()
        s["$defs"]["PriceSpec"]["properties"]["brand_new_key"] = {"type": "number"}
        return s

    monkeypatch.setattr(f"{__name__}.json_schema", more)
    assert "brand_new_key" in _schema_keys()
    assert not _mentioned(REFERENCE.read_text(encoding="utf-8"), "brand_new_key")


def test_the_readme_links_the_reference_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/reference.md" in readme
    assert "../shared" not in readme
    for doc in (readme, REFERENCE.read_text(encoding="utf-8")):
        base = ROOT if doc is readme else REFERENCE.parent
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc):
            assert (base / target).exists(), f"broken link: {target}"
