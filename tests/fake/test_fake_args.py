"""Tool-call arguments from a tool's parameter schema: types, enums, bounds, nesting, refs."""

from __future__ import annotations

from typing import Any

import pytest

from engine.fake.args import arguments, example


def test_required_properties_get_values_of_their_types() -> None:
    schema = {
        "type": "object",
        "required": ["s", "i", "n", "b", "a", "o"],
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "a": {"type": "array", "items": {"type": "integer"}},
            "o": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
            "optional": {"type": "string"},
        },
    }
    assert arguments(schema, "hi") == {"s": "hi", "i": 1, "n": 1, "b": True, "a": [1], "o": {"x": "hi"}}


def test_without_required_every_property_is_filled() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "null"}}}
    assert arguments(schema, "t") == {"a": "t", "b": None}


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"enum": ["celsius", "fahrenheit"]}, "celsius"),
        ({"const": 42}, 42),
        ({"type": "integer", "minimum": 5}, 5),
        ({"type": "integer", "exclusiveMinimum": 5}, 6),
        ({"type": "integer", "maximum": 0}, 0),
        ({"type": "number", "minimum": 2.5}, 2.5),
        ({"type": "string", "format": "date"}, "2024-01-01"),
        ({"type": "string", "format": "email"}, "user@example.com"),
        ({"type": "string", "maxLength": 3}, "hel"),
        ({"type": "string", "minLength": 8}, "helloxxx"),
        ({"type": ["null", "integer"]}, 1),
        ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, True),
        ({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["hello", "hello"]),
        ({"type": "array", "maxItems": 0}, []),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}, [1, True]),
        ({"type": "STRING"}, "hello"),  # Gemini's OpenAPI subset writes types in capitals
        ({}, "hello"),
    ],
)
def test_values(schema: dict[str, Any], value: Any) -> None:
    assert example(schema, "hello") == value


def test_refs_and_all_of_are_followed() -> None:
    schema = {
        "type": "object",
        "required": ["where"],
        "properties": {"where": {"$ref": "#/$defs/Place"}},
        "$defs": {
            "Place": {
                "allOf": [
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    {"properties": {"zip": {"type": "integer"}}, "required": ["zip"]},
                ]
            }
        },
    }
    assert arguments(schema, "Paris") == {"where": {"city": "Paris", "zip": 1}}


def test_a_recursive_schema_ends() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
    }
    value = arguments(schema, "x")
    depth = 0
    while isinstance(value, dict) and "child" in value:
        value, depth = value["child"], depth + 1
    assert 5 < depth < 20


def test_no_schema_or_no_object_gives_an_empty_object() -> None:
    assert arguments(None, "x") == {} and arguments({"type": "string"}, "x") == {}
    assert arguments({"type": "object"}, "x") == {}
